"""Exceptions of the stream processor: those of its model client (see ``streaming_detector.errors``).

``ProcessorError`` is their root. Bad Kafka messages are not exceptions here: ``eventbus.BadEventError`` turns
them into dead letters.
"""

from streaming_detector.errors import (
    ScoringConfigError,
    ScoringProtocolError,
    ScoringRejectedError,
    ScoringUnavailableError,
)
from streaming_detector.errors import ScoringError as ProcessorError

__all__ = [
    "ProcessorError",
    "ScoringConfigError",
    "ScoringProtocolError",
    "ScoringRejectedError",
    "ScoringUnavailableError",
]
