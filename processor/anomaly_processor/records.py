"""What the processor reads and writes: decoding consumed messages, verdict records and dead letters.

A dead letter (topic ``DLQ_TOPIC``) is a JSON object described by ``DeadLetter``: why the message was
refused, where it was (topic, partition, offset) and the original bytes, so it can be inspected and replayed.
"""

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anomaly_processor.scoring import Score
from eventbus import BadEventError, LogEvent, parse_event

PREVIEW_MAX_CHARS = 200
# A dead letter must fit in one Kafka record (1 MiB by default) after base64, so huge values are cut.
VALUE_MAX_BYTES = 512 * 1024


class ConsumedRecord(Protocol):
    """The fields of ``kafka.consumer.fetcher.ConsumerRecord`` the processor uses."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class DeadLetter(BaseModel):
    """One refused message, as written to the dead-letter topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(description="Why it was refused, naming the field, e.g. 'latency_ms: Input should be >= 0'.")
    topic: str = Field(description="Topic the message was consumed from.")
    partition: int = Field(description="Its partition.")
    offset: int = Field(description="Its offset: with topic and partition, where to find the original.")
    key: str | None = Field(description="The message key: UTF-8 text, or base64 (see key_encoding); null if none.")
    key_encoding: Literal["utf-8", "base64"] | None = Field(description="How ``key`` is written.")
    value_b64: str = Field(description="The original value bytes, base64 (empty for a null value).")
    value_preview: str = Field(description=f"The value as UTF-8 with replacement, cut to {PREVIEW_MAX_CHARS} chars.")
    value_size: int = Field(description="Length of the original value in bytes (-1 for a null value).")
    value_truncated: bool = Field(description=f"True when value_b64 holds only the first {VALUE_MAX_BYTES} bytes.")
    timestamp_ms: int = Field(description="The message's Kafka timestamp (epoch milliseconds).")


def dead_letter_json(record: ConsumedRecord, reason: str) -> bytes:
    """The dead-letter record for a consumed message refused for ``reason``."""
    key, key_encoding = _encode_key(record.key)
    value = record.value
    raw = value if value is not None else b""
    preview = raw[: PREVIEW_MAX_CHARS * 4].decode("utf-8", errors="replace")
    if len(preview) > PREVIEW_MAX_CHARS:
        preview = preview[: PREVIEW_MAX_CHARS - 1] + "…"
    return orjson.dumps(
        {
            "reason": reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": key,
            "key_encoding": key_encoding,
            "value_b64": base64.b64encode(raw[:VALUE_MAX_BYTES]).decode("ascii"),
            "value_preview": preview,
            "value_size": len(raw) if value is not None else -1,
            "value_truncated": len(raw) > VALUE_MAX_BYTES,
            "timestamp_ms": record.timestamp,
        }
    )


def _encode_key(key: bytes | None) -> tuple[str | None, Literal["utf-8", "base64"] | None]:
    if key is None:
        return None, None
    try:
        return key.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(key).decode("ascii"), "base64"


def verdict_json(event: LogEvent, score: Score) -> bytes:
    """``Verdict(**event.model_dump(), **score._asdict()).to_json()``, without building the model.

    ``event`` is already a validated ``LogEvent`` and ``score`` was checked by ``decode_scores`` (bool,
    finite float, str), so validating again would only cost time; ``tests/unit`` pins the equivalence.
    """
    return orjson.dumps(
        {
            "event_id": event.event_id,
            "timestamp": event.timestamp,
            "service": event.service,
            "latency_ms": event.latency_ms,
            "error_rate": event.error_rate,
            "label": event.label,
            "anomaly": score.anomaly,
            "score": score.score,
            "model_version": score.model_version,
            "explanation": score.explanation,
            "incident_id": score.incident_id,
        }
    )


def decode_event(raw: bytes | None) -> LogEvent:
    """``eventbus.parse_event``, faster for valid events (one pass of pydantic's JSON parser).

    Anything the fast path refuses goes through ``parse_event`` itself, so refusal reasons are the shared ones;
    ``tests/unit`` checks that the fast path accepts nothing ``parse_event`` refuses.
    """
    if raw is not None:
        try:
            return LogEvent.model_validate_json(raw)
        except ValidationError:
            pass
    return parse_event(raw)


@dataclass
class DecodedBatch:
    """Consumed records split into valid events (with the record each came from) and refused messages."""

    events: list[LogEvent] = field(default_factory=list)
    event_records: list[ConsumedRecord] = field(default_factory=list)
    refused: list[tuple[ConsumedRecord, str]] = field(default_factory=list)


def decode_batch(records: Sequence[ConsumedRecord]) -> DecodedBatch:
    batch = DecodedBatch()
    for record in records:
        try:
            event = decode_event(record.value)
        except BadEventError as exc:
            batch.refused.append((record, exc.reason))
            continue
        batch.events.append(event)
        batch.event_records.append(record)
    return batch
