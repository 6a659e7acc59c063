"""App-level benchmarks and reliability checks (``python -m bench.app_api``, ``python -m bench.reliability``)."""
