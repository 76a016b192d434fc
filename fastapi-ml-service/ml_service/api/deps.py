"""Reusable dependencies: settings, the model, API keys, and the size-capped JSON body parsers."""

import hmac
import logging
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from pydantic import SecretStr, TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from ml_service.metrics import ServiceMetrics
from ml_service.model import ModelBundle
from ml_service.schemas import PREDICT_REQUEST_ADAPTER, PredictRequest
from ml_service.settings import MLSettings
from ml_service.store import ModelStore

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every dependency here is async although none awaits: FastAPI runs a plain ``def`` dependency in its
# thread pool, and a thread hop per dependency would cost more than the work on the hot path.

JSON_MEDIA_TYPE = "application/json"


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


def _key_matches(given: str | None, expected: SecretStr) -> bool:
    # compare_digest needs equal types; compare bytes so non-ASCII input cannot raise.
    return given is not None and hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


async def require_scoring_key(settings: SettingsDep, api_key: ApiKeyDep) -> None:
    """401 unless ML_SCORING_API_KEY is unset or sent in X-API-Key."""
    expected = settings.ml_scoring_api_key
    if expected is not None and not _key_matches(api_key, expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong X-API-Key")


async def require_admin_key(request: Request, settings: SettingsDep, api_key: ApiKeyDep) -> None:
    """403 while ML_API_KEY is unset; 401 unless it is sent in X-API-Key."""
    expected = settings.ml_api_key
    if expected is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="reload disabled: set ML_API_KEY")
    if not _key_matches(api_key, expected):
        log.warning("refused %s from %s: missing or wrong X-API-Key", request.url.path, _client(request))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or wrong X-API-Key")


async def read_json_body(request: Request, settings: SettingsDep) -> bytes:
    """The request body, refused with 415 unless JSON and 413 beyond MAX_BODY_BYTES, before it is all read."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE and not (media_type.startswith("application/") and media_type.endswith("+json")):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail=f"Content-Type must be {JSON_MEDIA_TYPE}, got {media_type or 'none'}",
        )
    limit = settings.max_body_bytes
    too_large = HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, detail=f"request body exceeds MAX_BODY_BYTES={limit} bytes"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():  # a chunked body has no Content-Length: count as it arrives
            received += len(chunk)
            if received > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:  # nobody is left to answer; not a server error
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="client disconnected") from None
    return b"".join(chunks)


BodyDep = Annotated[bytes, Depends(read_json_body)]


def validate_body(adapter: TypeAdapter[T], body: bytes) -> T:
    """Parse and validate JSON bytes in one pass; on failure a 422 naming each bad field."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        # Inputs are not echoed back: they can be megabytes, and reflecting them helps nobody.
        errors = [
            {**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_input=False, include_url=False)
        ]
        raise RequestValidationError(errors) from None


async def parse_predict_request(body: BodyDep) -> PredictRequest:
    return validate_body(PREDICT_REQUEST_ADAPTER, body)


async def parse_predict_batch(request: Request, body: BodyDep) -> list[PredictRequest]:
    adapter: TypeAdapter[list[PredictRequest]] = request.app.state.batch_adapter
    return validate_body(adapter, body)


PredictRequestDep = Annotated[PredictRequest, Depends(parse_predict_request)]
PredictBatchDep = Annotated[list[PredictRequest], Depends(parse_predict_batch)]


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown client"
