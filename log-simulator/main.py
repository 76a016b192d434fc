"""Send labelled log events to Kafka: ``python main.py [--rate 10] [--count N] ...`` (``--help`` lists the flags)."""

import sys

from log_simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
