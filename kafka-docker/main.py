"""Run the Kafka broker for the pipeline: ``python main.py up|down|status|topics|consume TOPIC``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_kafka.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
