"""Prometheus scrape endpoint."""

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ml_service.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse, response_model=None, summary="Prometheus metrics")
def metrics(service_metrics: MetricsDep) -> Response:
    """Requests by route and status, request latency, rows scored, anomalies flagged, model version."""
    return Response(generate_latest(service_metrics.registry), media_type=CONTENT_TYPE_LATEST)
