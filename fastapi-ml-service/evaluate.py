"""`make eval`: evaluate.py [--nab PATH] [--scenarios all|names] [--seed N] [--json out.json] (see --help)."""

import sys

from ml_service.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
