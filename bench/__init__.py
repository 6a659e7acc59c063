"""App-level benchmarks and reliability checks (``python -m bench.app``, ``python -m bench.reliability``)."""
