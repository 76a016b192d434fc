"""Builds the application (``create_app``) and runs it under uvicorn (``run``)."""

import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ml_service.api.main import api_router
from ml_service.api.routes.predict import batch_request_body
from ml_service.api.scoring_lane import ScoringLane, validation_error_content
from ml_service.dashboard import shutdown_dashboard
from ml_service.errors import ModelError
from ml_service.metrics import MetricsMiddleware, ServiceMetrics
from ml_service.settings import SERVICE_DIR, MLSettings
from ml_service.store import ModelStore

log = logging.getLogger(__name__)

DESCRIPTION = """Scores service log events for anomalies with IsolationForests: the point model on
[latency_ms, error_rate], or, for items carrying `context` (per-service features from the processor, as many
as GET /model's `context.features`), the context model.

* `POST /predict` scores one event, `POST /predict/batch` a JSON array of up to PREDICT_BATCH_MAX
  (default 10000) events in one vectorised call; bodies above MAX_BODY_BYTES (default 4 MiB) get 413.
* Set `ML_SCORING_API_KEY` to require `X-API-Key` on scoring; `POST /model/reload` needs `ML_API_KEY`.
"""


class MLServiceApp(FastAPI):
    """The FastAPI app, with the scoring routes answered by ``ScoringLane`` before FastAPI's middleware and router."""

    scoring_lane: ScoringLane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ScoringLane.route_of(scope)
        if route is None:
            await super().__call__(scope, receive, send)
        else:
            await self.scoring_lane(scope, receive, send, route)


def create_app(settings: MLSettings | None = None) -> MLServiceApp:
    """The ASGI app; it loads the model at startup, and starts (not ready) if the model is refused."""
    settings = settings or MLSettings()
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            bundle = app.state.store.load()
            metrics.set_model(bundle.version)
        except ModelError as exc:
            metrics.set_model(None)
            log.error("no model loaded, /ready answers 503 until POST /model/reload succeeds: %s", exc)
        yield
        shutdown_dashboard()

    app = MLServiceApp(title="Log anomaly ML service", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = ModelStore(settings.model_path)
    app.state.metrics = metrics
    app.scoring_lane = app.state.scoring_lane = ScoringLane(settings, app.state.store, metrics)

    app.include_router(api_router)
    _document_batch_cap(app, settings.predict_batch_max)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _document_batch_cap(app: FastAPI, max_items: int) -> None:
    """Put the configured PREDICT_BATCH_MAX into the OpenAPI schema of /predict/batch."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI after the first call; the update is idempotent
        schema["paths"]["/predict/batch"]["post"].update(batch_request_body(max_items))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: Sequence[Any] = exc.errors()
    return JSONResponse(validation_error_content(errors), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Only bugs get here: every bad input is answered 4xx before. Log it whole, answer without details.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def configure_logging(settings: MLSettings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(settings: MLSettings | None = None) -> None:
    """``python main.py``: serve ``main:app`` with uvicorn on ML_HOST:ML_PORT with ML_WORKERS processes."""
    settings = settings or MLSettings()
    configure_logging(settings)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it so the process dies "by signal".
    # A requested stop is a clean stop: exit 0, which supervisors and `docker stop` read as success.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "main:app",
        app_dir=str(SERVICE_DIR),
        host=settings.ml_host,
        port=settings.ml_port,
        workers=settings.ml_workers,
        log_level=settings.log_level.lower(),
        access_log=settings.ml_access_log,
        timeout_graceful_shutdown=3,  # an open dashboard stream must not hold up a stop
    )
