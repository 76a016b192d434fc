"""A consumed Kafka record as the processor reads one (``anomaly_processor.records.ConsumedRecord``), for unit tests."""

from typing import NamedTuple


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = []
