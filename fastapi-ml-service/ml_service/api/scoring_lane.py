"""``POST /predict`` and ``POST /predict/batch`` as one plain ASGI handler, in front of FastAPI's stack.

These two routes are the service's traffic. Through FastAPI each request paid for its middleware
layers, its router and its dependency resolution several times what scoring costs, so the app
(``ml_service.app.MLServiceApp``) hands them to ``ScoringLane`` before any of that. The lane does what
the stack did, in the same order and with the same answers: the X-API-Key check (401), Content-Type
(415), MAX_BODY_BYTES from Content-Length and while the body streams in (413), validation naming each
bad field (422), no model (503), the context length against the model (422), and it counts the request
in the metrics. ``/predict/batch`` also takes the processor's binary columns (``eventbus.scoring_wire``,
by Content-Type) and answers in them when the request's Accept names them; refused as JSON is (422).
The routes in ``routes/predict.py`` document these operations and answer through ``ScoringLane.answer`` too.
"""

import logging
import time
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from eventbus.scoring_wire import SCORING_BATCH_MEDIA_TYPE, WireFormatError, decode_batch, encode_answer
from ml_service.api.columns import ScoringColumns, columns_from_json, columns_from_requests
from ml_service.api.deps import key_matches
from ml_service.metrics import ServiceMetrics
from ml_service.model import ModelBundle
from ml_service.schemas import MAX_CONTEXT_FEATURES, PREDICT_REQUEST_ADAPTER, PredictRequest, batch_adapter
from ml_service.settings import MLSettings
from ml_service.store import ModelStore

log = logging.getLogger(__name__)

PREDICT_ROUTE: Final = "/predict"
BATCH_ROUTE: Final = "/predict/batch"
JSON_MEDIA_TYPE: Final = "application/json"
MAX_LISTED_ERRORS: Final = 20  # a 10,000-item batch can fail 20,000 ways; the first few say enough

_JSON_HEADERS: Final = [(b"content-type", JSON_MEDIA_TYPE.encode())]
_BINARY_HEADERS: Final = [(b"content-type", SCORING_BATCH_MEDIA_TYPE.encode())]
_INTERNAL_ERROR: Final = orjson.dumps({"detail": "internal server error"})
_MAX_RUNS_SHARE: Final = 16  # beyond one run per 16 rows, build the answer row by row
_ANOMALY_OPENING: Final = {True: b'{"anomaly":true,"score":', False: b'{"anomaly":false,"score":'}


class Refusal(Exception):
    """A request answered with a 4xx/5xx: its status and JSON body."""

    def __init__(self, status: int, content: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = orjson.dumps(content)


def validation_error_content(errors: Sequence[Any]) -> dict[str, Any]:
    """The 422 body: a one-line ``detail`` naming each bad field, and the first errors' loc, msg and type."""
    listed = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_LISTED_ERRORS]]
    detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in listed)
    if len(errors) > MAX_LISTED_ERRORS:
        detail += f"; and {len(errors) - MAX_LISTED_ERRORS} more errors"
    return {"detail": detail, "errors": listed}


def _location(loc: Sequence[Any]) -> str:
    """``("body", 3, "latency_ms")`` -> ``body[3].latency_ms``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def _invalid(errors: Sequence[Any]) -> Refusal:
    return Refusal(422, validation_error_content(errors))


def validate_body(adapter: TypeAdapter[Any], body: bytes) -> Any:
    """Parse and validate JSON bytes in one pass; on failure a 422 naming each bad field."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        # Inputs are not echoed back: they can be megabytes, and reflecting them helps nobody.
        errors = exc.errors(include_input=False, include_url=False)
        raise _invalid([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None


def score_columns(
    columns: ScoringColumns, bundle: ModelBundle, *, at: int | None
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """``(anomaly, score)`` per row, in order: one context-model call for the rows with a context, one
    point-model call for the others. ``at`` is the first row's index in the body (None: the body is one
    item), for the 422 a context of the wrong length gets."""
    rows = columns.context_rows
    if not len(rows):
        return bundle.predict(columns.latency_ms, columns.error_rate)
    names = bundle.context_features
    width = len(names)
    wrong = np.flatnonzero(columns.context_lengths != width)
    if len(wrong):
        raise _invalid(
            [
                {
                    "loc": ("body", "context") if at is None else ("body", at + int(rows[i]), "context"),
                    "msg": f"should have {width} features ({', '.join(names)}), got {int(columns.context_lengths[i])}",
                    "type": "context_length",
                }
                for i in wrong.tolist()
            ]
        )
    anomaly = np.zeros(len(columns), dtype=bool)
    score = np.zeros(len(columns), dtype=np.float64)
    anomaly[rows], score[rows] = bundle.predict_context(columns.context_values.reshape(len(rows), width))
    if len(rows) < len(columns):
        point = np.ones(len(columns), dtype=bool)
        point[rows] = False
        anomaly[point], score[point] = bundle.predict(columns.latency_ms[point], columns.error_rate[point])
    return anomaly, score


def verdicts_json(anomaly: NDArray[np.bool_], score: NDArray[np.float64], version: str) -> bytes:
    """``[{"anomaly": ..., "score": ..., "model_version": ...}, ...]`` as JSON, built from orjson's number texts."""
    count = len(score)
    if not count:
        return b"[]"
    closing = b',"model_version":' + orjson.dumps(version) + b"}"
    # Rows come in runs of equal verdicts (anomalies are rare): each run is one orjson list whose commas become
    # "closing,opening" (a number's text has no comma), ~2x cheaper than splicing row by row.
    starts = np.flatnonzero(anomaly[1:] != anomaly[:-1]) + 1
    if len(starts) > count // _MAX_RUNS_SHARE:  # verdicts alternating at every turn: per row is cheaper
        return _verdicts_by_row(anomaly, score, closing)
    values = score.tolist()
    flags = anomaly.tolist()
    bounds = [0, *starts.tolist(), count]
    runs = []
    for start, stop in zip(bounds, bounds[1:], strict=False):
        opening = _ANOMALY_OPENING[flags[start]]
        texts = orjson.dumps(values[start:stop])[1:-1].replace(b",", closing + b"," + opening)
        runs.append(opening + texts + closing)
    return b"[" + b",".join(runs) + b"]"


def _verdicts_by_row(anomaly: NDArray[np.bool_], score: NDArray[np.float64], closing: bytes) -> bytes:
    scores = orjson.dumps(score.tolist())[1:-1].split(b",")
    parts = chain.from_iterable(
        zip(map(_ANOMALY_OPENING.__getitem__, anomaly.tolist()), scores, repeat(closing + b","))
    )
    return b"[" + b"".join(parts)[:-1] + b"]"


class ScoringLane:
    """Answers the scoring routes: ``answer`` gives (status, JSON body), calling it serves the ASGI request."""

    def __init__(self, settings: MLSettings, store: ModelStore, metrics: ServiceMetrics) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._batch_adapter: TypeAdapter[list[PredictRequest]] = batch_adapter(settings.predict_batch_max)

    @staticmethod
    def route_of(scope: Scope) -> str | None:
        """The scoring route a request is for, or None for any other request."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return path if path in (PREDICT_ROUTE, BATCH_ROUTE) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        started = time.perf_counter()
        status = 500
        media_type = JSON_MEDIA_TYPE
        try:
            status, body, media_type = await self.answer(scope, receive, route)
        except Exception:
            # Only bugs get here: every bad input is answered 4xx before. Log it whole, answer without details.
            log.exception("unexpected error on POST %s", route)
            body = _INTERNAL_ERROR
        try:
            kind = _BINARY_HEADERS if media_type == SCORING_BATCH_MEDIA_TYPE else _JSON_HEADERS
            headers = [*kind, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self._metrics.record_request(route, "POST", status, time.perf_counter() - started)

    async def answer(self, scope: Scope, receive: Receive, route: str) -> tuple[int, bytes, str]:
        """Status, body and media type of the answer to a POST on ``route`` (a scoring route): JSON, or the
        binary columns for a binary batch whose Accept names them."""
        answer_binary = False
        try:
            body, binary, answer_binary = await self._read_body(scope, receive, route)
            if route == PREDICT_ROUTE:
                return 200, self._score_one(validate_body(PREDICT_REQUEST_ADAPTER, body)), JSON_MEDIA_TYPE
            if binary:
                columns = self._binary_columns(body)
            else:
                bulk = columns_from_json(body, self._settings.predict_batch_max)
                columns = bulk if bulk is not None else columns_from_requests(validate_body(self._batch_adapter, body))
            bundle = self._bundle()
            anomaly, score = score_columns(columns, bundle, at=0)
        except Refusal as refusal:
            return refusal.status, refusal.body, JSON_MEDIA_TYPE
        self._metrics.count_scored(len(columns), int(np.count_nonzero(anomaly)))
        if answer_binary:
            return 200, encode_answer(anomaly, score, bundle.version), SCORING_BATCH_MEDIA_TYPE
        return 200, verdicts_json(anomaly, score, bundle.version), JSON_MEDIA_TYPE

    def _binary_columns(self, body: bytes) -> ScoringColumns:
        """A binary batch's columns; 422 naming what is wrong, as a JSON batch's would be."""
        try:
            batch = decode_batch(body, self._settings.predict_batch_max, MAX_CONTEXT_FEATURES)
        except WireFormatError as exc:
            raise _invalid([{"loc": ("body",), "msg": str(exc), "type": "binary_batch"}]) from None
        flagged, width = batch.contexts.shape
        return ScoringColumns(
            latency_ms=batch.latency_ms,
            error_rate=batch.error_rate,
            context_rows=np.flatnonzero(batch.has_context),
            context_lengths=np.full(flagged, width, dtype=np.intp),
            context_values=batch.contexts.reshape(-1),
        )

    def _score_one(self, event: PredictRequest) -> bytes:
        bundle = self._bundle()
        if "context" in event:
            anomalies, scores = score_columns(columns_from_requests([event]), bundle, at=None)
            anomaly, score = bool(anomalies[0]), float(scores[0])
        else:
            anomaly, score = bundle.predict_one(event["latency_ms"], event["error_rate"])
        self._metrics.count_scored(1, int(anomaly))
        return orjson.dumps({"anomaly": anomaly, "score": score, "model_version": bundle.version})

    def _bundle(self) -> ModelBundle:
        """The model to answer with (taken once per request: a reload never mixes two models), or 503."""
        bundle = self._store.bundle
        if bundle is None:
            raise Refusal(503, {"detail": f"model not loaded: {self._store.error}"})
        return bundle

    def _too_large(self) -> Refusal:
        return Refusal(413, {"detail": f"request body exceeds MAX_BODY_BYTES={self._settings.max_body_bytes} bytes"})

    async def _read_body(self, scope: Scope, receive: Receive, route: str) -> tuple[bytes, bool, bool]:
        """(the body, whether it is a binary batch, whether the answer may be one), after the key and
        Content-Type checks; 413 beyond MAX_BODY_BYTES, before it is all read."""
        content_type = declared_length = api_key = None
        accept = ""
        for name, value in scope["headers"]:
            if name == b"accept":
                accept += value.decode("latin-1") + ","
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
            elif name == b"content-length" and declared_length is None:
                declared_length = value.decode("latin-1")
            elif name == b"x-api-key" and api_key is None:
                api_key = value.decode("latin-1")
        expected = self._settings.ml_scoring_api_key
        if expected is not None and not key_matches(api_key, expected):
            raise Refusal(401, {"detail": "missing or wrong X-API-Key"})
        media_type = (content_type or "").split(";", 1)[0].strip().lower()
        binary = route == BATCH_ROUTE and media_type == SCORING_BATCH_MEDIA_TYPE
        if (
            not binary
            and media_type != JSON_MEDIA_TYPE
            and not (media_type.startswith("application/") and media_type.endswith("+json"))
        ):
            detail = f"Content-Type must be {JSON_MEDIA_TYPE}, got {media_type or 'none'}"
            raise Refusal(415, {"detail": detail})
        limit = self._settings.max_body_bytes
        if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
            raise self._too_large()
        chunks: list[bytes] = []
        received = 0
        while True:  # a chunked body has no Content-Length: count as it arrives
            message = await receive()
            if message["type"] == "http.disconnect":  # nobody is left to answer; not a server error
                raise Refusal(400, {"detail": "client disconnected"})
            chunk: bytes = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                answer_binary = binary and SCORING_BATCH_MEDIA_TYPE in {
                    kind.split(";", 1)[0].strip().lower() for kind in accept.split(",")
                }
                return chunks[0] if len(chunks) == 1 else b"".join(chunks), binary, answer_binary
