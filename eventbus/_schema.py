"""The one schema for a log event (topic ``logs``) and its verdict (topic ``predictions``).

The floor is the original design's event, ``{"timestamp": time.time(), "service", "latency_ms",
"error_rate"}``, sent with no key and no id. What producers add is kept, not refused:

- ``timestamp``: a JSON number of epoch seconds (``time.time()``), or of milliseconds, microseconds or
  nanoseconds, told apart by magnitude (see ``EPOCH_UNITS``); or an ISO-8601 string (no zone means UTC).
  Optional: without it the processor uses the Kafka record's time. The value is kept as sent; its
  parsed form is ``LogEvent.event_time`` (epoch seconds).
- ``event_id``: optional; the processor derives ``<topic>:<partition>:<offset>`` for an event without one,
  so a redelivered message keeps its id.
- ``label``: the simulator's ground truth, never a model input.
- any other field (``host``, ``trace_id``, ...): kept and carried unchanged into the verdict, within
  ``EVENT_MAX_BYTES`` for the whole message.

Refused, with a reason naming the field: non-JSON, not an object, a missing ``service``, ``latency_ms`` or
``error_rate``, wrong types (``"250"`` or ``true`` is not a number), NaN or infinity, a negative latency or
timestamp, an error rate outside [0, 1], an unreadable timestamp string, a message over the size bound.
"""

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, NamedTuple, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from eventbus._incidents import Explanation
from eventbus.errors import BadEventError

LABEL_NORMAL = "normal"
# A whole event message, extra fields included; a larger one is dead-lettered.
EVENT_MAX_BYTES = 64 * 1024
# An epoch number below the first bound is seconds, below the next milliseconds, and so on: 1e11 s is the
# year 5138, 1e11 ms is 1973, so no timestamp of this century is ambiguous.
EPOCH_UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (math.inf, 1e9))
# Fields a verdict sets itself; an event's own field of the same name is replaced in its verdict.
VERDICT_FIELDS = ("event_id", "event_time", "anomaly", "score", "model_version", "explanation", "incident_id")

NAME_MAX = 200  # characters of a service name or an event id
LABEL_MAX = 64
ServiceName = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
EventId = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
LatencyMs = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ErrorRate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Label = Annotated[str, Field(max_length=LABEL_MAX)]
TIMESTAMP_TEXT_MAX = 64


def epoch_seconds(timestamp: float | str) -> float:
    """Epoch seconds of a timestamp as the schema accepts it; ``ValueError`` naming the rule if unreadable."""
    if isinstance(timestamp, str):
        try:
            parsed = datetime.fromisoformat(timestamp)
        except ValueError:
            raise ValueError(
                f"{timestamp[:TIMESTAMP_TEXT_MAX]!r} is not ISO-8601 (e.g. 2026-01-01T12:00:00Z); "
                "epoch time is a JSON number"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if type(timestamp) is float and 0.0 <= timestamp < EPOCH_UNITS[0][0]:  # time.time(): the common case first
        return timestamp
    for bound, per_second in EPOCH_UNITS:
        if timestamp < bound:
            return timestamp / per_second
    raise AssertionError("unreachable: the last bound is infinite")


def time_cell_seconds(text: str) -> float:
    """Epoch seconds of a time written in a file (a CSV cell): an epoch number by the same magnitude rule, or
    ISO-8601 (no zone means UTC); ``ValueError`` if neither."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return epoch_seconds(text)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{text!r} is not an epoch time")
    return epoch_seconds(number)


def _check_timestamp(value: Any) -> int | float | str:
    """A timestamp as sent, if the schema accepts it (one error message instead of one per union member)."""
    if isinstance(value, str):
        if not 0 < len(value) <= TIMESTAMP_TEXT_MAX:
            raise ValueError(f"a timestamp string has 1 to {TIMESTAMP_TEXT_MAX} characters")
        epoch_seconds(value)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("should be a number (epoch seconds, or ms) or an ISO-8601 string")
    if not math.isfinite(value) or value < 0:
        raise ValueError("should be a finite epoch time >= 0")
    return value


_TIMESTAMP_FORMS: list[dict[str, Any]] = [
    {"type": "number", "minimum": 0, "description": "epoch seconds (or ms, us, ns: by magnitude)"},
    {"type": "string", "minLength": 1, "maxLength": TIMESTAMP_TEXT_MAX, "format": "date-time"},
]
Timestamp = Annotated[int | float | str, PlainValidator(_check_timestamp), WithJsonSchema({"anyOf": _TIMESTAMP_FORMS})]


def _timestamp_or_origins(value: Any, info: ValidationInfo) -> int | float | str | None:
    """A timestamp sent; or, for an event without one validated with an ``EventOrigin``, the message's time."""
    if value is None:
        return info.context.time_s if isinstance(info.context, EventOrigin) else None
    return _check_timestamp(value)


# Validated even when absent, so that the message's time stands in (the field then stays "unset": not as sent).
_EventTimestamp = Annotated[
    int | float | str | None,
    PlainValidator(_timestamp_or_origins),
    WithJsonSchema({"anyOf": [*_TIMESTAMP_FORMS, {"type": "null"}]}),
    Field(validate_default=True),
]


class _Event(BaseModel):
    """The fields of an event that a verdict carries as they are; any other field is kept too."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    timestamp: _EventTimestamp = None  # first, as the original design sends it: lines print fields as sent
    service: ServiceName
    latency_ms: LatencyMs
    error_rate: ErrorRate
    label: Label = LABEL_NORMAL


class LogEvent(_Event):
    """One log event as a producer sends it; fields beyond these are kept in ``model_extra``.

    Validated with ``context=EventOrigin(...)`` (as the processor does), an event without its own id or time
    takes the message's: ``event_id`` and ``event_time`` are then always set, and ``as_sent()`` still leaves
    them out.
    """

    event_id: Annotated[EventId | None, Field(validate_default=True)] = None

    @field_validator("event_id")
    @classmethod
    def _derived_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and isinstance(info.context, EventOrigin):
            return info.context.event_id
        return value

    @cached_property
    def event_time(self) -> float | None:
        """When it happened, in epoch seconds: from ``timestamp``, else the message's time (None if unknown).

        Worked out once: the context, the verdict and the incidents each read it."""
        return None if self.timestamp is None else epoch_seconds(self.timestamp)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("event_time", None)  # worked out again: ``update`` may change the timestamp
        return copy

    def key(self) -> bytes:
        return self.service.encode()

    def as_sent(self) -> dict[str, Any]:
        """The fields the producer sent (its extra ones included), with their values as sent: what
        ``model_dump(exclude_unset=True)`` gives, in the same order, at a third of its cost (it runs once per
        verdict); an extra field's value is the event's own object, not a copy."""
        fields = self.model_fields_set
        values = self.__dict__  # holds ``event_time`` too once worked out: the declared fields are named
        sent = {name: values[name] for name in _DECLARED if name in fields}
        if self.__pydantic_extra__:
            sent.update(self.__pydantic_extra__)
        return sent

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_sent())


class EventOrigin(NamedTuple):
    """Where a message sits: the id an event without one is given, and the message's time in epoch seconds."""

    topic: str
    partition: int
    offset: int
    time_s: float

    @property
    def event_id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


class Verdict(_Event):
    """A log event with the detector's answer: ``score`` is higher when more anomalous.

    Every field of the event is carried as the producer sent it (extra fields too); ``event_id`` is the
    event's own or the derived one, ``event_time`` the parsed time (the record's time when none was sent).
    """

    event_id: EventId
    event_time: Annotated[float, Field(allow_inf_nan=False)] | None = None
    anomaly: bool
    score: float
    model_version: str
    explanation: Explanation | None = None  # why: see ``eventbus._incidents``
    incident_id: str | None = None  # the incident this alert belongs to (alerts only)

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("score must be finite")
        return value

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


_DECLARED = tuple(LogEvent.model_fields)  # in their order, the order ``as_sent`` gives them in
_EVENT_FIELDS = frozenset(_DECLARED)
_new_object = object.__new__
_set_slot = object.__setattr__  # pydantic's own way in ``model_construct``


def plain_event(data: dict[str, Any], origin: EventOrigin | None = None) -> LogEvent | None:
    """``LogEvent`` of a decoded JSON object whose fields all have their plain form, built without pydantic's
    validator (at a third of its cost); None for anything else, which ``validate_event`` then decides.

    Plain: ``service`` a string, ``latency_ms`` and ``error_rate`` floats within their bounds, a ``timestamp``
    (a number, or a readable ISO string), ``label`` and ``event_id`` strings or absent (the id then from
    ``origin``). Ints, nulls, a missing timestamp and every refusal go to pydantic, so reasons stay its own;
    ``tests/unit`` checks that both give the same event (fields, fields set, extras) on the cases they share.
    """
    service = data.get("service")
    latency = data.get("latency_ms")
    rate = data.get("error_rate")
    if (
        type(service) is not str
        or not 0 < len(service) <= NAME_MAX
        or type(latency) is not float
        or not 0.0 <= latency < math.inf  # NaN fails every comparison
        or type(rate) is not float
        or not 0.0 <= rate <= 1.0
    ):
        return None
    timestamp: Any = data.get("timestamp")
    kind = type(timestamp)
    if kind is float or kind is int:  # not bool: its type is bool
        if not 0 <= timestamp < math.inf:
            return None
    elif kind is not str or not 0 < len(timestamp) <= TIMESTAMP_TEXT_MAX:
        return None
    try:
        seconds = epoch_seconds(timestamp)  # what ``_check_timestamp`` checks, and ``event_time`` worked out
    except ValueError:
        return None
    label = data.get("label", LABEL_NORMAL)
    if type(label) is not str or len(label) > LABEL_MAX:
        return None
    event_id = data.get("event_id")
    if event_id is None:
        if origin is None or "event_id" in data:
            return None
        event_id = origin.event_id
    elif type(event_id) is not str or not 0 < len(event_id) <= NAME_MAX:
        return None
    event = _new_object(LogEvent)
    values = {"timestamp": timestamp, "service": service, "latency_ms": latency, "error_rate": rate}
    values["label"], values["event_id"], values["event_time"] = label, event_id, seconds  # the last: its cache
    _set_slot(event, "__dict__", values)
    _set_slot(event, "__pydantic_fields_set__", set(data))  # extra fields count as set too, as in pydantic
    extra = {} if _EVENT_FIELDS.issuperset(data) else {k: v for k, v in data.items() if k not in _EVENT_FIELDS}
    _set_slot(event, "__pydantic_extra__", extra)
    _set_slot(event, "__pydantic_private__", None)
    return event


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field, e.g. ``latency_ms: Input should be >= 0``."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


def parse_event(raw: bytes | None) -> LogEvent:
    """Decode one Kafka message value into a ``LogEvent``, or raise ``BadEventError``."""
    return validate_event(event_object(raw))


def event_object(raw: bytes | None) -> dict[str, Any]:
    """The JSON object of one message value, or ``BadEventError`` (validate it with ``validate_event``)."""
    if raw is None:
        raise BadEventError("empty message (null value)")
    if len(raw) > EVENT_MAX_BYTES:
        raise BadEventError(f"message of {len(raw)} bytes is over the {EVENT_MAX_BYTES}-byte limit of an event")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadEventError(f"not a JSON object: got {type(data).__name__}")
    return data


def validate_event(data: dict[str, Any], origin: "EventOrigin | None" = None) -> LogEvent:
    """``LogEvent`` of a decoded JSON object, or ``BadEventError`` naming each bad field."""
    try:
        return LogEvent.model_validate(data, context=origin)
    except ValidationError as exc:
        raise BadEventError(describe_validation_error(exc)) from None
