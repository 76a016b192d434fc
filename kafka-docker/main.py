"""Run the Kafka broker for the pipeline: ``python main.py up|down|status|topics|consume TOPIC``."""

import sys

from local_kafka.cli import main

if __name__ == "__main__":
    sys.exit(main())
