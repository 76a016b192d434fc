"""``make bench``: measure the pipeline beside the original design. ``python benchmarks/run.py --help``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
