"""Send labelled log events to Kafka: ``python main.py [--rate 10] [--count N] ...`` (``--help`` lists the flags)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from log_simulator.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
