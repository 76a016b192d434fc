"""Reusable dependencies: settings, the model, the metrics and API keys."""

import hmac
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from pydantic import SecretStr

from ml_service.metrics import ServiceMetrics
from ml_service.model import ModelBundle
from ml_service.settings import MLSettings
from ml_service.store import ModelStore

log = logging.getLogger(__name__)

# Every dependency here is async although none awaits: FastAPI runs a plain ``def`` dependency in its
# thread pool, and a thread hop per dependency would cost more than the work it does.


async def get_settings(request: Request) -> MLSettings:
    settings: MLSettings = request.app.state.settings
    return settings


async def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[MLSettings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


async def get_bundle(store: StoreDep) -> ModelBundle:
    """The model to answer with, or 503 naming why there is none."""
    bundle = store.bundle
    if bundle is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=f"model not loaded: {store.error}")
    return bundle


BundleDep = Annotated[ModelBundle, Depends(get_bundle)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key, when one is configured.")
ApiKeyDep = Annotated[str | None, Security(api_key_header)]


def key_matches(given: str | None, expected: SecretStr) -> bool:
    # compare_digest needs equal types; compare bytes so non-ASCII input cannot raise.
    return given is not None and hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


async def require_scoring_key(settings: SettingsDep, api_key: ApiKeyDep) -> None:
    """401 unless ML_SCORING_API_KEY is unset or sent in X-API-Key."""
    expected = settings.ml_scoring_api_key
    if expected is not None and not key_matches(api_key, expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong X-API-Key")


async def require_admin_key(request: Request, settings: SettingsDep, api_key: ApiKeyDep) -> None:
    """403 while ML_API_KEY is unset; 401 unless it is sent in X-API-Key."""
    expected = settings.ml_api_key
    if expected is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="reload disabled: set ML_API_KEY")
    if not key_matches(api_key, expected):
        log.warning("refused %s from %s: missing or wrong X-API-Key", request.url.path, _client(request))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong X-API-Key")


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"
