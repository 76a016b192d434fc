"""Liveness and readiness."""

from fastapi import APIRouter, HTTPException, status

from ml_service.api.deps import StoreDep
from ml_service.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Alive")
async def health() -> HealthResponse:
    """200 whenever the process answers, model or not."""
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "No model is loaded; detail says why."}},
    summary="Ready to score",
)
async def ready(store: StoreDep) -> ReadyResponse:
    """200 when a model is loaded, else 503 with the reason (missing file, failed integrity check...)."""
    bundle = store.bundle
    if bundle is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"model not loaded: {store.error}")
    return ReadyResponse(ready=True, model_version=bundle.version)
