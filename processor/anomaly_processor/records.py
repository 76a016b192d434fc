"""What the processor reads and writes: decoding consumed messages, verdict records and dead letters.

An event without ``event_id`` is given ``<topic>:<partition>:<offset>`` of its message, one without a
``timestamp`` the message's time; an event re-keyed through the repartition topic carries where it first sat
(in its forwarded batch, ``anomaly_processor.forwarding``; before that format, in an ``origin`` header, still
read), so its id is the same whichever way it travelled.

A dead letter (topic ``DLQ_TOPIC``) is a JSON object described by ``DeadLetter``: why the message was
refused, where it was (topic, partition, offset) and the original bytes, so it can be inspected and replayed.
"""

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anomaly_processor import forwarding
from anomaly_processor.forwarding import ForwardedRecord
from anomaly_processor.ml_client import Score
from eventbus import (
    EVENT_MAX_BYTES,
    BadEventError,
    EventOrigin,
    LogEvent,
    StreamRecord,
    event_object,
    plain_event,
    validate_event,
)

PREVIEW_MAX_CHARS = 200
# A dead letter must fit in one Kafka record (1 MiB by default) after base64, so huge values are cut.
VALUE_MAX_BYTES = 512 * 1024


# The fields of a consumed record the processor reads, whichever Kafka client consumed it.
ConsumedRecord = StreamRecord


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
    place = record.origin if isinstance(record, ForwardedRecord) else record  # where the original sits
    raw = value if value is not None else b""
    preview = raw[: PREVIEW_MAX_CHARS * 4].decode("utf-8", errors="replace")
    if len(preview) > PREVIEW_MAX_CHARS:
        preview = preview[: PREVIEW_MAX_CHARS - 1] + "…"
    return orjson.dumps(
        {
            "reason": reason,
            "topic": place.topic,
            "partition": place.partition,
            "offset": place.offset,
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
    """``Verdict(**event.as_sent(), event_id=..., event_time=..., <score's verdict fields>).to_json()``, without
    building the model (``in_context`` and ``muted`` stay in the processor): the event is validated already
    and ``score`` was checked by ``decode_scores``."""
    verdict = event.as_sent()
    verdict["event_id"] = event.event_id
    verdict["event_time"] = event.event_time
    verdict["anomaly"] = score.anomaly
    verdict["score"] = score.score
    verdict["model_version"] = score.model_version
    # Set by the processor, or absent (as ``Verdict.to_json`` leaves out what is None): never the producer's.
    for name, value in (("explanation", score.explanation), ("incident_id", score.incident_id)):
        if value is None:
            verdict.pop(name, None)
        else:
            verdict[name] = value
    return orjson.dumps(verdict)


ORIGIN_HEADER = "origin"


def origin_of(record: ConsumedRecord) -> EventOrigin:
    """Where the record's event first sat: its own place, or the one its ``origin`` header names."""
    for name, value in record.headers or ():
        if name == ORIGIN_HEADER and value:
            topic, partition, offset = value.decode("utf-8", "replace").rsplit(":", 2)
            return EventOrigin(topic, int(partition), int(offset), record.timestamp / 1000)
    return EventOrigin(record.topic, record.partition, record.offset, record.timestamp / 1000)


def decode_event(raw: bytes | None, origin: EventOrigin | None = None) -> LogEvent:
    """``eventbus.parse_event``, faster for valid events, with ``origin`` giving the id and time of an event that
    has none: an event of the plain form is built by ``eventbus.plain_event`` from orjson's object; any other
    goes through pydantic (one pass of its JSON parser, then the shared decoding for the refusal's reason).

    ``tests/unit`` checks that this accepts nothing ``parse_event`` refuses, and gives the same events.
    """
    data = _json_object(raw)
    if data is not None:
        event = plain_event(data, origin)
        if event is not None:
            return event
    return _validated(raw, origin)


def decode_record(record: ConsumedRecord, data: dict[str, Any] | None = None) -> LogEvent:
    """``decode_event(record.value, origin_of(record))``, the origin worked out only for an event without id;
    ``data``: the JSON object of its value, when parsed already."""
    if data is None:
        data = _json_object(record.value)
    if data is not None:
        event = plain_event(data, None if "event_id" in data else origin_of(record))
        if event is not None:
            return event
    return _validated(record.value, origin_of(record))


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None or len(raw) > EVENT_MAX_BYTES:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if type(data) is dict else None


def _validated(raw: bytes | None, origin: EventOrigin | None) -> LogEvent:
    if raw is not None and len(raw) <= EVENT_MAX_BYTES:
        try:
            return LogEvent.model_validate_json(raw, context=origin)
        except ValidationError:
            pass
    return validate_event(event_object(raw), origin)


@dataclass
class DecodedBatch:
    """Consumed records split into valid events to score here (with the record each came from), records to
    forward to their service's owner through the repartition topic (with that service's key), and refused
    messages."""

    events: list[LogEvent] = field(default_factory=list)
    event_records: list[ConsumedRecord] = field(default_factory=list)
    forward: list[tuple[ConsumedRecord, bytes]] = field(default_factory=list)
    refused: list[tuple[ConsumedRecord, str]] = field(default_factory=list)


def decode_batch(
    records: Sequence[ConsumedRecord],
    scores_here: Callable[[bytes], bool] | None = None,
    rekeyed_topic: str | None = None,
) -> DecodedBatch:
    """Decode ``records``. An event whose key is not its service (a keyless producer's, say) is scored here only
    if ``scores_here(service key)``, i.e. this consumer owns its service's partition of ``rekeyed_topic``;
    otherwise it is forwarded there. A keyless one is forwarded unvalidated: its owner validates it (and
    dead-letters it, losing nothing: it had no key). Records read from ``rekeyed_topic`` are keyed by service
    already, or forwarded batches (``anomaly_processor.forwarding``)."""
    batch = DecodedBatch()
    here: dict[str, bool] = {}  # per service: whether it is scored here (one look-up per service, not per event)

    def elsewhere(service: str) -> bool:
        ours = here.get(service)
        if ours is None:
            assert scores_here is not None
            ours = here[service] = scores_here(service.encode())
        return not ours

    for record in records:
        routed = scores_here is not None
        if record.topic == rekeyed_topic:
            if forwarding.is_forwarded(record.value):
                _decode_forwarded(record, batch)
                continue
            data, routed = None, False
        else:
            data = _json_object(record.value)
        if routed and record.key is None and data is not None:
            service = data.get("service")
            if type(service) is str and service and elsewhere(service):  # one too long is refused by its owner
                batch.forward.append((record, service.encode()))
                continue
        try:
            event = decode_record(record, data)
        except BadEventError as exc:
            batch.refused.append((record, exc.reason))
            continue
        if routed and record.key is not None and record.key != event.key() and elsewhere(event.service):
            batch.forward.append((record, event.key()))
            continue
        batch.events.append(event)
        batch.event_records.append(record)
    return batch


def _decode_forwarded(record: ConsumedRecord, batch: DecodedBatch) -> None:
    """The events of a forwarded batch (``anomaly_processor.forwarding``), each as a ``ForwardedRecord``."""
    try:
        topic, partitions, offsets, timestamps, values = forwarding.unpack(record.value)  # type: ignore[arg-type]
    except forwarding.ForwardFormatError as exc:
        batch.refused.append((record, exc.reason))
        return
    for partition, offset, timestamp, raw in zip(partitions, offsets, timestamps, values, strict=True):
        origin = EventOrigin(topic, partition, offset, timestamp / 1000)
        event_record = ForwardedRecord(record, raw, timestamp, origin)
        try:
            event = decode_event(raw, origin)
        except BadEventError as exc:  # valid where it was first read: a processor of other rules forwarded it
            batch.refused.append((event_record, exc.reason))
            continue
        batch.events.append(event)
        batch.event_records.append(event_record)
