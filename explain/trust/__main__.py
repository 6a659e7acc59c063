"""``python -m explain.trust``: the trust checks' command line (:mod:`explain.trust.cli`)."""

import sys

from explain.trust.cli import run

if __name__ == "__main__":
    sys.exit(run())
