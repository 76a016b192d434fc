"""Scoring: one event, or a batch of events in one vectorised model call."""

from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Response

from ml_service.api.deps import BundleDep, MetricsDep, PredictBatchDep, PredictRequestDep, require_scoring_key
from ml_service.schemas import PREDICT_REQUEST_ADAPTER, ErrorResponse, PredictResponse

router = APIRouter(tags=["predict"], dependencies=[Depends(require_scoring_key)])

_REQUEST_SCHEMA = PREDICT_REQUEST_ADAPTER.json_schema()
_LATENCY = itemgetter("latency_ms")
_ERROR_RATE = itemgetter("error_rate")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "ML_SCORING_API_KEY is set and X-API-Key does not match it."},
    413: {"model": ErrorResponse, "description": "The body exceeds MAX_BODY_BYTES."},
    415: {"model": ErrorResponse, "description": "The body is not sent as application/json."},
    422: {"model": ErrorResponse, "description": "Not JSON, or a field is missing, mistyped or out of range."},
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
    """Body: a log event; only ``latency_ms`` and ``error_rate`` are required and used."""
    anomaly, score = bundle.predict(np.array([event["latency_ms"]]), np.array([event["error_rate"]]))
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
    latency = np.fromiter(map(_LATENCY, events), dtype=np.float64, count=len(events))
    error_rate = np.fromiter(map(_ERROR_RATE, events), dtype=np.float64, count=len(events))
    anomaly, score = bundle.predict(latency, error_rate)
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
