"""The HTTP scorer against a small local HTTP server, and the isolation of events a scorer rejects."""

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from anomaly_processor.batch_scoring import score_isolating
from anomaly_processor.errors import (
    ScoringConfigError,
    ScoringProtocolError,
    ScoringRejectedError,
    ScoringUnavailableError,
)
from anomaly_processor.ml_client import HttpScorer, Score

from eventbus import LogEvent
from streaming_detector.profiles import generate_normal_events
from tests.conftest import free_port

Reply = tuple[int, Any]  # status and JSON body


def model_reply(items: list[dict[str, Any]]) -> Reply:
    """What the ML service answers: anomalous when latency is above 1000 ms."""
    return 200, [
        {"anomaly": item["latency_ms"] > 1000, "score": item["latency_ms"] / 10_000, "model_version": "stub-1"}
        for item in items
    ]


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the timeout test hangs up before the answer: a broken pipe here is expected


class StubScorer:
    """A real HTTP server on 127.0.0.1 whose answer to /predict/batch is decided by ``respond``. It knows only
    JSON, as a service from before the binary batches: those get 415 (counted in ``binary_refused``)."""

    def __init__(self) -> None:
        self.respond: Callable[[list[dict[str, Any]]], Reply] = model_reply
        self.requests: list[tuple[dict[str, str], list[dict[str, Any]]]] = []
        self.binary_refused = 0
        self.delay_s = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers["Content-Type"] != "application/json":
                    stub.binary_refused += 1
                    self._send(415, {"detail": "Content-Type must be application/json"})
                    return
                body = json.loads(raw)
                stub.requests.append((dict(self.headers), body))
                time.sleep(stub.delay_s)
                self._send(*stub.respond(body))

            def do_GET(self) -> None:
                self._send(200, {"ready": True})

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubScorer]:
    server = StubScorer()
    yield server
    server.stop()


def events(count: int, *, slow: Sequence[int] = ()) -> list[LogEvent]:
    made = generate_normal_events(count, seed=5)
    return [e.model_copy(update={"latency_ms": 5000.0}) if i in slow else e for i, e in enumerate(made)]


def test_scores_come_back_in_order_and_the_label_is_never_sent(stub: StubScorer) -> None:
    batch = events(5, slow=[3])
    scores = HttpScorer(stub.url).score(batch)

    assert [s.anomaly for s in scores] == [False, False, False, True, False]
    assert scores[3] == Score(True, 0.5, "stub-1")
    [(headers, body)] = stub.requests
    assert headers["Content-Type"] == "application/json"
    assert "X-API-Key" not in headers
    assert [item["service"] for item in body] == [e.service for e in batch]
    assert all(set(item) == {"latency_ms", "error_rate", "service"} for item in body)


def test_a_service_without_binary_batches_gets_json_after_one_415(stub: StubScorer) -> None:
    scorer = HttpScorer(stub.url)
    first, second = scorer.score(events(3, slow=[1])), scorer.score(events(2))
    assert [s.anomaly for s in first] == [False, True, False] and len(second) == 2
    assert stub.binary_refused == 1  # tried once; from then on JSON
    assert [len(body) for _, body in stub.requests] == [3, 2]
    assert scorer.batch_format == "json"


def test_the_api_key_is_sent_when_configured(stub: StubScorer) -> None:
    HttpScorer(stub.url, api_key="s3cret").score(events(1))
    assert stub.requests[0][0]["X-API-Key"] == "s3cret"


def test_a_batch_above_the_cap_is_split_into_requests(stub: StubScorer) -> None:
    batch = events(25, slow=[24])
    scores = HttpScorer(stub.url, max_items=10).score(batch)
    assert [len(body) for _, body in stub.requests] == [10, 10, 5]
    assert len(scores) == 25 and scores[24].anomaly and not scores[0].anomaly


def test_no_request_for_no_events(stub: StubScorer) -> None:
    assert HttpScorer(stub.url).score([]) == []
    assert stub.requests == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_mean_retry(stub: StubScorer, status: int) -> None:
    stub.respond = lambda items: (status, {"detail": "model not loaded"})
    with pytest.raises(ScoringUnavailableError, match=f"HTTP {status}: model not loaded"):
        HttpScorer(stub.url).score(events(2))


@pytest.mark.parametrize("status", [400, 413, 422])
def test_data_errors_are_rejections_with_the_service_message(stub: StubScorer, status: int) -> None:
    stub.respond = lambda items: (status, {"detail": "body[0].latency_ms: Input should be >= 0"})
    with pytest.raises(ScoringRejectedError) as caught:
        HttpScorer(stub.url).score(events(2))
    assert caught.value.status == status
    assert caught.value.detail == "body[0].latency_ms: Input should be >= 0"


@pytest.mark.parametrize("status", [401, 403, 404, 415])
def test_auth_and_url_errors_are_configuration_errors(stub: StubScorer, status: int) -> None:
    stub.respond = lambda items: (status, {"detail": "missing or wrong X-API-Key"})
    with pytest.raises(ScoringConfigError, match="missing or wrong X-API-Key"):
        HttpScorer(stub.url).score(events(1))


def test_a_service_that_is_not_listening_means_retry() -> None:
    with pytest.raises(ScoringUnavailableError) as caught:
        HttpScorer(f"http://127.0.0.1:{free_port()}").score(events(1))
    assert caught.value.reason == "Connection refused"


def test_a_service_slower_than_the_timeout_means_retry(stub: StubScorer) -> None:
    stub.delay_s = 1.0
    with pytest.raises(ScoringUnavailableError, match="no answer within 0.2s"):
        HttpScorer(stub.url, timeout_s=0.2).score(events(1))


@pytest.mark.parametrize(
    "payload",
    [
        [],  # too few scores
        {"anomaly": False},  # not a list
        [{"anomaly": "no", "score": 0.1, "model_version": "v"}],
        [{"anomaly": False, "score": None, "model_version": "v"}],
        [{"anomaly": False, "score": 0.1}],
    ],
)
def test_an_answer_that_breaks_the_contract_is_a_protocol_error(stub: StubScorer, payload: Any) -> None:
    stub.respond = lambda items: (200, payload)
    with pytest.raises(ScoringProtocolError):
        HttpScorer(stub.url).score(events(1))


def test_ready_reflects_the_ready_endpoint(stub: StubScorer) -> None:
    assert HttpScorer(stub.url).ready()
    assert not HttpScorer(f"http://127.0.0.1:{free_port()}").ready()


class PickyScorer:
    """Rejects any batch holding an event whose service is 'bad', like a stricter model schema would."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, batch: Sequence[LogEvent]) -> list[Score]:
        self.calls += 1
        bad = [e.event_id for e in batch if e.service == "bad"]
        if bad:
            raise ScoringRejectedError(422, f"bad service in {bad[0]}")
        return [Score(False, e.latency_ms, "v") for e in batch]


@pytest.mark.parametrize("bad_positions", [[], [0], [63], [5, 6, 40], list(range(64))])
def test_isolation_dead_letters_only_the_rejected_events(bad_positions: list[int]) -> None:
    batch = [
        e.model_copy(update={"service": "bad"}) if i in bad_positions else e
        for i, e in enumerate(generate_normal_events(64, seed=9))
    ]
    scorer = PickyScorer()

    scores, rejected = score_isolating(scorer, batch)

    assert [index for index, _ in rejected] == bad_positions
    for index, reason in rejected:
        assert reason == f"ML service rejected the event (422): bad service in {batch[index].event_id}"
    for index, score in enumerate(scores):
        if index in bad_positions:
            assert score is None
        else:
            assert score == Score(False, batch[index].latency_ms, "v")
    if not bad_positions:
        assert scorer.calls == 1


def test_isolation_lets_unavailability_through_to_be_retried() -> None:
    class Down:
        def score(self, batch: Sequence[LogEvent]) -> list[Score]:
            raise ScoringUnavailableError("Connection refused")

    with pytest.raises(ScoringUnavailableError):
        score_isolating(Down(), events(3))
