"""Stream processor: score every log event from Kafka with the ML service. Run ``python main.py``.

Configuration comes from the environment: see ``anomaly_processor.settings`` and ``eventbus.KafkaSettings``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anomaly_processor.app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
