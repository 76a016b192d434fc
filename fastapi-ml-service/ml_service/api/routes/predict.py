"""Scoring: one event, or a batch of events in one vectorised call per model.

An item with ``context`` (the processor's per-service features) is scored by the context model, one
without by the point model on raw ``[latency_ms, error_rate]``; a batch may mix both, answered in order.
These declarations give the operations their OpenAPI documentation; requests are answered by
``ml_service.api.scoring_lane.ScoringLane``, which the app calls before FastAPI's stack (the endpoints
below answer through it as well).
"""

from typing import Any

from fastapi import APIRouter, Request, Response, Security

from ml_service.api.deps import api_key_header
from ml_service.api.scoring_lane import BATCH_ROUTE, PREDICT_ROUTE, ScoringLane
from ml_service.schemas import PREDICT_REQUEST_ADAPTER, ErrorResponse, PredictResponse

# The key is checked by the lane; declaring the header here documents it.
router = APIRouter(tags=["predict"], dependencies=[Security(api_key_header)])

_REQUEST_SCHEMA = PREDICT_REQUEST_ADAPTER.json_schema()
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "ML_SCORING_API_KEY is set and X-API-Key does not match it."},
    413: {"model": ErrorResponse, "description": "The body exceeds MAX_BODY_BYTES."},
    415: {
        "model": ErrorResponse,
        "description": "The body is not sent as application/json (or, to /predict/batch, as the processor's "
        "binary columns: application/vnd.log-pipeline.scoring-batch, see eventbus.scoring_wire).",
    },
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
    PREDICT_ROUTE,
    response_model=PredictResponse,
    responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST_SCHEMA}}}},
    summary="Score one event",
)
async def predict(request: Request) -> Response:
    """Body: a log event; only ``latency_ms`` and ``error_rate`` are required. With ``context`` (as many
    finite floats as GET /model's ``context.features``) the context model scores it instead of the point model."""
    return await _answer(request, PREDICT_ROUTE)


@router.post(
    BATCH_ROUTE,
    name="predict_batch",
    response_model=list[PredictResponse],
    responses=_ERRORS,
    summary="Score a batch of events",
)
async def predict_batch(request: Request) -> Response:
    """Body: a JSON array of the events ``/predict`` takes, at most PREDICT_BATCH_MAX (default 10000) of them.

    Answers an array of verdicts in the same order. Each item is validated exactly as by ``/predict``;
    one bad item refuses the whole batch with 422, naming its index and field.
    """
    return await _answer(request, BATCH_ROUTE)


async def _answer(request: Request, route: str) -> Response:
    lane: ScoringLane = request.app.state.scoring_lane
    status, body, media_type = await lane.answer(request.scope, request.receive, route)
    return Response(content=body, status_code=status, media_type=media_type)
