"""The ML service's client: the ``Scorer`` protocol the pipeline calls, and ``HttpScorer``, its default over HTTP.

``HttpScorer`` is also the ``streaming_detector.ModelClient`` the processor's ``ContextualScorer`` runs over.

Contract of the ML service: ``POST /predict/batch`` takes a JSON array of events (``latency_ms``,
``error_rate``, ``service``; never ``label``, the ground truth; optionally
``context``, the event's per-service context features) and answers 200 with
``[{"anomaly": bool, "score": float, "model_version": str}, ...]`` in the same order.
``GET /ready`` answers 200 when it can score; ``GET /model`` describes the served models.

``HttpScorer`` sends its batches as binary columns (``eventbus.scoring_wire``: half the bytes, and no JSON
to write or parse on either side) and asks for the answer in them; a service that answers 415 to them gets
JSON from then on.
"""

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import orjson
import requests

from eventbus import LogEvent
from eventbus.scoring_wire import SCORING_BATCH_MEDIA_TYPE, WireFormatError, decode_answer, encode_batch
from streaming_detector import (
    Score,
    ScoringConfigError,
    ScoringProtocolError,
    ScoringRejectedError,
    ScoringUnavailableError,
)
from streaming_detector.scorer import Contexts

# The service's limit on events per request.
MAX_ITEMS_PER_REQUEST = 10_000
# Answers that say "this data is wrong": the events are isolated and the offending ones dead-lettered.
REJECTED_STATUSES = frozenset({400, 413, 422})
# Answers that say "not now": the same batch is retried.
RETRY_STATUSES = frozenset({408, 425, 429})
_DETAIL_MAX_CHARS = 300
# Features are sent rounded to this many decimals (surprisals in nats: 1e-6 is far below any threshold's
# precision); the JSON of a context is then half as long, and as fast to write and to parse.
CONTEXT_DECIMALS = 6
BatchFormat = Literal["binary", "json"]
_BINARY_HEADERS = {"Content-Type": SCORING_BATCH_MEDIA_TYPE, "Accept": f"{SCORING_BATCH_MEDIA_TYPE}, application/json"}

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """Anything that scores a batch of events, in order; the pipeline depends on nothing else.

    ``score`` raises ``ScoringUnavailableError`` when it cannot answer now (retried),
    ``ScoringRejectedError`` when the batch holds data it refuses (isolated), and
    ``ScoringConfigError`` when it will never answer this caller (fatal).
    """

    def score(self, events: Sequence[LogEvent]) -> list[Score]: ...


class HttpScorer:
    """Scores through the ML service's ``/predict/batch`` over one keep-alive HTTP session."""

    context_decimals: int | None = CONTEXT_DECIMALS

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 10.0,
        max_items: int = MAX_ITEMS_PER_REQUEST,
        session: requests.Session | None = None,
        batch_format: BatchFormat = "binary",
    ) -> None:
        """``batch_format``: how batches are sent first (binary falls back to JSON for good on a 415)."""
        if not 1 <= max_items <= MAX_ITEMS_PER_REQUEST:
            raise ValueError(f"max_items must be in [1, {MAX_ITEMS_PER_REQUEST}], got {max_items}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_items = max_items
        self._predict_url = f"{self.base_url}/predict/batch"
        self._ready_url = f"{self.base_url}/ready"
        self._model_url = f"{self.base_url}/model"
        self.batch_format: BatchFormat = batch_format
        self._session = session or requests.Session()
        self.waited_s = 0.0  # spent waiting for the ML service's answers (BATCH_TIMINGS' ML hop)
        # The scorer is an internal service: no proxy or netrc lookups from the environment on every request.
        self._session.trust_env = False
        self._session.headers["Content-Type"] = "application/json"
        if api_key:
            self._session.headers["X-API-Key"] = api_key

    def score(self, events: Sequence[LogEvent], contexts: Contexts | None = None) -> list[Score]:
        """Scores of ``events`` in order; ``contexts[i]``, when given and not None, is sent as event i's ``context``."""
        scores: list[Score] = []
        for start in range(0, len(events), self.max_items):
            stop = start + self.max_items
            scores.extend(self._score_chunk(events[start:stop], None if contexts is None else contexts[start:stop]))
        return scores

    def model_info(self) -> dict[str, Any]:
        """``GET /model``: the served models' description; raises like ``score`` when the service cannot answer."""
        response = self._call(" from /model", lambda: self._session.get(self._model_url, timeout=self.timeout_s))
        status = response.status_code
        if status == 200:
            try:
                info: Any = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                raise ScoringProtocolError(f"/model answer is not JSON: {exc}") from None
            if not isinstance(info, dict):
                raise ScoringProtocolError(f"/model answer is not an object: {type(info).__name__}")
            return info
        detail = response_detail(response.content)
        if status >= 500 or status in RETRY_STATUSES:
            raise ScoringUnavailableError(f"/model: HTTP {status}: {detail}")
        raise ScoringConfigError(f"{self._model_url} answered {status} ({detail}); check ML_SERVICE_URL")

    def ready(self) -> bool:
        """True when the service answers ``/ready`` with 200."""
        try:
            return self._session.get(self._ready_url, timeout=self.timeout_s).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        self._session.close()

    def _call(self, source: str, send: Callable[[], requests.Response]) -> requests.Response:
        """``send()``'s response; a timeout or a connection failure is ``ScoringUnavailableError`` (retried)."""
        started = time.perf_counter()
        try:
            return send()
        except requests.Timeout:
            raise ScoringUnavailableError(f"no answer{source} within {self.timeout_s:g}s") from None
        except requests.RequestException as exc:
            raise ScoringUnavailableError(connection_reason(exc)) from None
        finally:
            self.waited_s += time.perf_counter() - started

    def _post_binary(self, events: Sequence[LogEvent], contexts: Contexts | None) -> requests.Response | None:
        """The batch sent as binary columns; None when it cannot be (contexts of different widths: JSON lets
        the service name the wrong ones)."""
        try:
            body = encode_batch([e.latency_ms for e in events], [e.error_rate for e in events], contexts)
        except ValueError:
            return None
        return self._call(
            "",
            lambda: self._session.post(self._predict_url, data=body, headers=_BINARY_HEADERS, timeout=self.timeout_s),
        )

    def _post_json(self, events: Sequence[LogEvent], contexts: Contexts | None) -> requests.Response:
        items = [
            {
                "latency_ms": e.latency_ms,
                "error_rate": e.error_rate,
                "service": e.service,
            }
            for e in events
        ]
        if contexts is not None:
            for item, context in zip(items, contexts, strict=True):
                if context is not None:
                    item["context"] = context
        body = orjson.dumps(items)
        return self._call("", lambda: self._session.post(self._predict_url, data=body, timeout=self.timeout_s))

    def _score_chunk(self, events: Sequence[LogEvent], contexts: Contexts | None) -> list[Score]:
        if not events:
            return []
        response: requests.Response | None = None
        if self.batch_format == "binary":
            response = self._post_binary(events, contexts)
            if response is not None and response.status_code == 415:
                log.warning("%s takes no binary batches (HTTP 415): sending JSON from now on", self._predict_url)
                self.batch_format = "json"
        if self.batch_format == "json" or response is None:
            response = self._post_json(events, contexts)
        status = response.status_code
        if status == 200:
            if response.headers.get("content-type", "").startswith(SCORING_BATCH_MEDIA_TYPE):
                return decode_binary_scores(response.content, len(events))
            return decode_scores(response.content, len(events))
        detail = response_detail(response.content)
        if status in REJECTED_STATUSES:
            raise ScoringRejectedError(status, detail)
        if status >= 500 or status in RETRY_STATUSES:
            raise ScoringUnavailableError(f"HTTP {status}: {detail}")
        raise ScoringConfigError(
            f"{self._predict_url} answered {status} ({detail}); check ML_SERVICE_URL and ML_SCORING_API_KEY"
        )


def decode_scores(content: bytes, expected: int) -> list[Score]:
    """Read a ``/predict/batch`` answer, checking it against the contract, or raise ``ScoringProtocolError``."""
    try:
        items: Any = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise ScoringProtocolError(f"answer is not JSON: {exc}") from None
    if not isinstance(items, list) or len(items) != expected:
        got = f"{len(items)} items" if isinstance(items, list) else type(items).__name__
        raise ScoringProtocolError(f"answer should be a list of {expected} scores, got {got}")
    scores: list[Score] = []
    for index, item in enumerate(items):
        try:
            anomaly = item["anomaly"]
            value = item["score"]
            version = item["model_version"]
        except (TypeError, KeyError):
            raise ScoringProtocolError(f"score #{index} lacks anomaly/score/model_version: {item!r:.200}") from None
        if (
            type(anomaly) is not bool
            or type(value) not in (float, int)
            or not math.isfinite(value)
            or type(version) is not str
        ):
            raise ScoringProtocolError(f"score #{index} has wrong types or a non-finite score: {item!r:.200}")
        scores.append(Score(anomaly, float(value), version))
    return scores


def decode_binary_scores(content: bytes, expected: int) -> list[Score]:
    """Read a binary ``/predict/batch`` answer (``eventbus.scoring_wire``), or raise ``ScoringProtocolError``."""
    try:
        anomaly, score, version = decode_answer(content, expected)
    except WireFormatError as exc:
        raise ScoringProtocolError(f"binary answer: {exc}") from None
    return [Score(flag, value, version) for flag, value in zip(anomaly, score, strict=True)]


def response_detail(content: bytes) -> str:
    """The service's own message: FastAPI's ``detail`` when there is one, else the body; one line, short."""
    text: str
    try:
        data: Any = orjson.loads(content)
        detail = data.get("detail", data) if isinstance(data, dict) else data
        text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", errors="replace")
    text = " ".join(text.split()) or "(empty body)"
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 1] + "…"


_ERRNO_MESSAGE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def connection_reason(exc: BaseException) -> str:
    """A short reason for a failed request, e.g. ``Connection refused``, instead of urllib3's long chain."""
    match = _ERRNO_MESSAGE.search(str(exc))
    if match:
        return match.group(1).strip()
    if "RemoteDisconnected" in str(exc) or "Connection aborted" in str(exc):
        return "connection closed by the service"
    return type(exc).__name__
