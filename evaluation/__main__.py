"""`make eval`: python -m evaluation [--nab PATH] [--scenarios all|names] [--seed N] [--json out.json] (see --help)."""

import sys

from evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
