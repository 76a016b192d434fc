"""The served model: what it is, and reloading it from disk."""

import logging

from fastapi import APIRouter, Depends, HTTPException, status

from ml_service.api.deps import BundleDep, MetricsDep, StoreDep, require_admin_key
from ml_service.errors import ModelError
from ml_service.schemas import ErrorResponse, ModelInfo, ReloadResponse

log = logging.getLogger(__name__)

router = APIRouter(prefix="/model", tags=["model"])


@router.get(
    "",
    response_model=ModelInfo,
    responses={503: {"model": ErrorResponse, "description": "No model is loaded."}},
    summary="The loaded model",
)
async def model_info(bundle: BundleDep) -> ModelInfo:
    """Version, training time and data summary, contamination, threshold and sha256 of the served bundle,
    and in ``context`` the context model's features, configuration, gate and threshold."""
    gate = bundle.gate_config
    context = {
        **bundle.context_metadata,
        "gate": {"threshold": gate.threshold, "cooldown_events": gate.cooldown_events},
    }
    return ModelInfo.model_validate(
        {**bundle.metadata.model_dump(), "version": bundle.version, "sha256": bundle.sha256, "context": context}
    )


@router.post(
    "/reload",
    response_model=ReloadResponse,
    dependencies=[Depends(require_admin_key)],
    responses={
        401: {"model": ErrorResponse, "description": "X-API-Key missing or not ML_API_KEY."},
        403: {"model": ErrorResponse, "description": "ML_API_KEY is unset: reloading is disabled."},
        409: {"model": ErrorResponse, "description": "The file on disk was refused; the previous model stays."},
    },
    summary="Reload the model from disk",
)
def reload_model(store: StoreDep, metrics: MetricsDep) -> ReloadResponse:
    """Verify the file's sha256 against its metadata, load it, and swap it in atomically.

    A plain ``def``: loading takes a fraction of a second and runs in the thread pool, not the event loop.
    """
    previous = store.bundle.version if store.bundle else None
    try:
        bundle = store.load()
    except ModelError as exc:
        log.error("model reload refused: %s", exc)
        kept = f"; still serving {previous}" if previous else ""
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"reload refused: {exc}{kept}") from None
    metrics.set_model(bundle.version)
    return ReloadResponse(model_version=bundle.version, previous_version=previous, changed=bundle.version != previous)
