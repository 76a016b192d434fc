"""``make bench``: measure the pipeline beside the original design. ``python benchmarks/run.py --help``."""

import sys

from benchmarks.pipeline_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
