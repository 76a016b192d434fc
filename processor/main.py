"""Stream processor: score every log event from Kafka with the ML service. Run ``python main.py``.

Configuration comes from the environment: see ``anomaly_processor.settings`` and ``eventbus.KafkaSettings``.
"""

import sys

from anomaly_processor.app import main

if __name__ == "__main__":
    sys.exit(main())
