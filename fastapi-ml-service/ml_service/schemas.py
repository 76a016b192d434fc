"""The HTTP API's request and response shapes.

A request is a log event as it travels on the ``logs`` topic, of which only ``latency_ms`` and
``error_rate`` are required, optionally with ``context``: the event's per-service context features,
computed by the processor's ``ContextTracker`` (its length is checked against the served model by the
route). The fields' types are ``eventbus``'s, not restated. Validation is strict where it protects the
model: ``"250"`` or ``true`` is not a number, NaN/Infinity/1e400 are not finite; other fields a producer
adds (``host``, ``trace_id``...) are ignored, as the model does not use them. ``PredictRequest`` is a
TypedDict, not a model: pydantic validates a 10,000-item batch into
dicts three times faster than into model instances, with the same rules.
"""

from typing import Annotated, Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from eventbus import ErrorRate, EventId, Label, LatencyMs, ServiceName, Timestamp

# Bounds the work of validating a context before the route checks its exact length against the model.
MAX_CONTEXT_FEATURES = 64

ContextFeatures = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]],
    Field(
        min_length=1,
        max_length=MAX_CONTEXT_FEATURES,
        description="The event's context features, finite, as many as GET /model's context.features: "
        "scored by the context model instead of the point model.",
    ),
]


class PredictRequest(TypedDict):
    """One event to score. ``label`` is accepted (events carry it) but never used by the model."""

    __pydantic_config__ = ConfigDict(extra="ignore", strict=True)  # type: ignore[misc]

    latency_ms: Annotated[LatencyMs, Field(description="Latency in ms, finite, >= 0.")]
    error_rate: Annotated[ErrorRate, Field(description="Share of failed requests, finite, in [0, 1].")]
    event_id: NotRequired[EventId | None]
    timestamp: NotRequired[Timestamp | None]
    service: NotRequired[ServiceName | None]
    label: NotRequired[Annotated[Label, Field(description="Ground truth of simulated events; not used.")] | None]
    context: NotRequired[ContextFeatures]


PREDICT_REQUEST_ADAPTER: TypeAdapter[PredictRequest] = TypeAdapter(PredictRequest)


def batch_adapter(max_items: int) -> TypeAdapter[list[PredictRequest]]:
    """Validator of a batch of at most ``max_items`` requests."""
    return TypeAdapter(Annotated[list[PredictRequest], Field(max_length=max_items)])


class PredictResponse(BaseModel):
    """The verdict for one event."""

    anomaly: bool = Field(description="True when score > the threshold of the model that scored it.")
    score: float = Field(
        description="Higher = more anomalous. Without context: the point model's score in (0, 1]; "
        "with context: the context model's raw score (surprisal in nats plus the forest's share)."
    )
    model_version: str = Field(description="iforest-<first 12 hex of the model file's sha256>.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: a message naming the problem (and the field, for 422)."""

    detail: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For 422: each error's location, message and type (at most 20, inputs not echoed)."
    )


class HealthResponse(BaseModel):
    status: str = Field(default="ok", description="Always ok: the process answers.")


class ReadyResponse(BaseModel):
    ready: bool
    model_version: str


class FeatureSummaryOut(BaseModel):
    mean: float
    std: float
    min: float
    max: float


class TrainingSummaryOut(BaseModel):
    source: str
    rows: int
    features: dict[str, FeatureSummaryOut]


class GateInfo(BaseModel):
    """How the processor turns raw context scores into alerts (``streaming_detector.GateConfig``)."""

    threshold: float
    cooldown_events: int


class ContextModelInfo(BaseModel):
    """The context model: what the processor needs to build its ``ContextTracker`` and ``AlertGate``."""

    features: list[str] = Field(description="Names of the context vector's entries, in order.")
    threshold: float = Field(description="A raw context score above this is anomalous.")
    context: dict[str, Any] = Field(description="ContextConfig of the per-service state (warm-up, windows...).")
    gate: GateInfo
    training: dict[str, Any] = Field(description="TrainingConfig the context forest was trained with.")
    training_rows: int
    training_flag_rate: float = Field(description="Share of held-out healthy events above the threshold.")
    trained_at: str


class ModelInfo(BaseModel):
    """The loaded bundle: the point model's fields, and ``context`` for the context model."""

    version: str
    sha256: str
    trained_at: str
    features: list[str]
    training: TrainingSummaryOut
    contamination: float
    threshold: float
    n_estimators: int
    max_samples: int
    sklearn_version: str
    context: ContextModelInfo


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str | None
    changed: bool
