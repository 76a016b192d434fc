"""The one schema for a log event (topic ``logs``) and its verdict (topic ``predictions``).

A log event is the original design's ``{timestamp, service, latency_ms, error_rate}`` plus
``event_id`` (unique) and ``label`` (the simulator's ground truth, never a model input).
Kafka's key is the service, so each service's events stay ordered in one partition.
"""

import math
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eventbus._incidents import Explanation
from eventbus.errors import BadEventError

LABEL_NORMAL = "normal"

ServiceName = Annotated[str, Field(min_length=1, max_length=200)]


class LogEvent(BaseModel):
    """One log event as the simulator produces it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    timestamp: Annotated[str, Field(min_length=1, max_length=64)]
    service: ServiceName
    latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    error_rate: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
    label: Annotated[str, Field(max_length=64)] = LABEL_NORMAL

    def key(self) -> bytes:
        return self.service.encode()

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump())


class Verdict(LogEvent):
    """A log event with the detector's answer: ``score`` is higher when more anomalous."""

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


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad field, e.g. ``latency_ms: Input should be >= 0``."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{field}: {item['msg']}")
    return "; ".join(parts)


def parse_event(raw: bytes | None) -> LogEvent:
    """Decode one Kafka message value into a ``LogEvent``, or raise ``BadEventError``."""
    if raw is None:
        raise BadEventError("empty message (null value)")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadEventError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadEventError(f"not a JSON object: got {type(data).__name__}")
    try:
        return LogEvent.model_validate(data)
    except ValidationError as exc:
        raise BadEventError(describe_validation_error(exc)) from None
