"""Scoring: one event, or a batch of events in one vectorised call per model.

An item with ``context`` (the processor's per-service features) is scored by the context model, one
without by the point model on raw ``[latency_ms, error_rate]``; a batch may mix both, answered in order.
"""

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Response
from fastapi.exceptions import RequestValidationError
from numpy.typing import NDArray

from ml_service.api.deps import BundleDep, MetricsDep, PredictBatchDep, PredictRequestDep, require_scoring_key
from ml_service.model import ModelBundle
from ml_service.schemas import PREDICT_REQUEST_ADAPTER, ErrorResponse, PredictRequest, PredictResponse

router = APIRouter(tags=["predict"], dependencies=[Depends(require_scoring_key)])

_REQUEST_SCHEMA = PREDICT_REQUEST_ADAPTER.json_schema()
_LATENCY = itemgetter("latency_ms")
_ERROR_RATE = itemgetter("error_rate")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "ML_SCORING_API_KEY is set and X-API-Key does not match it."},
    413: {"model": ErrorResponse, "description": "The body exceeds MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {
        "model": ErrorResponse,
        "description": "Not JSON, or a field is missing, mistyped or out of range "
        "(a context of the wrong length included).",
    },
    503: {"model": ErrorResponse, "description": "No model is loaded (see GET /ready)."},
}


def batch_request_body(max_items: int) -> dict[str, Any]:
    """OpenAPI request body of ``/predict/batch`` (the cap comes from the settings)."""
    schema = {"type": "array", "items": _REQUEST_SCHEMA, "maxItems": max_items}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST_SCHEMA}}}},
    summary="Score one event",
)
async def predict(event: PredictRequestDep, bundle: BundleDep, metrics: MetricsDep) -> PredictResponse:
    """Body: a log event; only ``latency_ms`` and ``error_rate`` are required. With ``context`` (as many
    finite floats as GET /model's ``context.features``) the context model scores it instead of the point model."""
    anomaly, score = score_events([event], bundle, at=None)
    flagged = bool(anomaly[0])
    metrics.count_scored(1, int(flagged))
    return PredictResponse(anomaly=flagged, score=float(score[0]), model_version=bundle.version)


@router.post(
    "/predict/batch",
    name="predict_batch",
    response_model=list[PredictResponse],
    responses=_ERRORS,
    summary="Score a batch of events",
)
async def predict_batch(events: PredictBatchDep, bundle: BundleDep, metrics: MetricsDep) -> Response:
    """Body: a JSON array of the events ``/predict`` takes, at most PREDICT_BATCH_MAX (default 10000) of them.

    Answers an array of verdicts in the same order. Each item is validated exactly as by ``/predict``;
    one bad item refuses the whole batch with 422, naming its index and field.
    """
    anomaly, score = score_events(events, bundle, at=0)
    metrics.count_scored(len(events), int(anomaly.sum()))
    version = bundle.version
    # Serialised here with orjson (the schema is response_model above): 10x faster than per-item models.
    body = orjson.dumps(
        [
            {"anomaly": a, "score": s, "model_version": version}
            for a, s in zip(anomaly.tolist(), score.tolist(), strict=True)
        ]
    )
    return Response(content=body, media_type="application/json")


def score_events(
    events: Sequence[PredictRequest], bundle: ModelBundle, *, at: int | None
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """``(anomaly, score)`` per event, in order: one context-model call for the items with ``context``, one
    point-model call for the others. ``at`` is the first item's index in the body (None: the body is one item),
    for the 422 a context of the wrong length gets."""
    with_context = [i for i, event in enumerate(events) if "context" in event]
    if not with_context:
        latency = np.fromiter(map(_LATENCY, events), dtype=np.float64, count=len(events))
        error_rate = np.fromiter(map(_ERROR_RATE, events), dtype=np.float64, count=len(events))
        return bundle.predict(latency, error_rate)
    width = len(bundle.context_features)
    contexts = [events[i]["context"] for i in with_context]
    wrong = [i for i, context in zip(with_context, contexts, strict=True) if len(context) != width]
    if wrong:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "context") if at is None else ("body", at + i, "context"),
                    "msg": f"should have {width} features ({', '.join(bundle.context_features)}), "
                    f"got {len(events[i]['context'])}",
                    "type": "context_length",
                }
                for i in wrong
            ]
        )
    anomaly = np.zeros(len(events), dtype=bool)
    score = np.zeros(len(events), dtype=np.float64)
    anomaly[with_context], score[with_context] = bundle.predict_context(np.array(contexts, dtype=np.float64))
    if len(with_context) < len(events):
        point = np.ones(len(events), dtype=bool)
        point[with_context] = False
        rest = [events[i] for i in np.flatnonzero(point).tolist()]
        latency = np.fromiter(map(_LATENCY, rest), dtype=np.float64, count=len(rest))
        error_rate = np.fromiter(map(_ERROR_RATE, rest), dtype=np.float64, count=len(rest))
        anomaly[point], score[point] = bundle.predict(latency, error_rate)
    return anomaly, score
