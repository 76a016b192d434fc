"""Bad input to the real ML service, tried systematically: zero 5xx, and the service stays up.

Schemathesis generates requests from the service's own OpenAPI schema (valid and invalid ones, with a
fixed seed); hand-written cases cover what a schema cannot express: 10 MB bodies, deep nesting, numbers
beyond float, wrong content types, compressed garbage, chunked bodies past the limit.
"""

import gzip
import http.client
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from devstack.harness import MLServiceProcess, train_model
from devstack.processes import LOOPBACK, http_status

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 300
MAX_BODY_BYTES = 1024 * 1024
TRIED: Counter[str] = Counter()  # "negative POST /predict -> 422": how many generated requests got that answer


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServiceProcess]:
    folder = tmp_path_factory.mktemp("fuzz-ml")
    ml = MLServiceProcess(train_model(folder), folder, MAX_BODY_BYTES=str(MAX_BODY_BYTES), LOG_LEVEL="INFO")
    ml.start()
    yield ml
    ml.terminate()


def generated_requests_never_get_a_5xx(service: MLServiceProcess, mode: GenerationMode) -> None:
    """Every /predict* operation of the served OpenAPI schema, ``EXAMPLES_PER_OPERATION`` cases in ``mode``."""
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json").include(path_regex="^/predict")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.path for op in operations) == ["/predict", "/predict/batch"]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,  # the same inputs on every run: CI stays stable
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            TRIED[f"{mode.value} {case.method} {case.path} -> {response.status_code}"] += 1
            assert response.status_code < 500, (case.body, response.text)

        call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_never_get_a_5xx(service: MLServiceProcess, mode: GenerationMode) -> None:
    generated_requests_never_get_a_5xx(service, mode)
    tried = {k: n for k, n in TRIED.items() if k.startswith(mode.value)}
    print(f"\n[fuzz] schemathesis {mode.value}: {sum(tried.values())} requests: {dict(sorted(tried.items()))}")
    assert sum(tried.values()) >= EXAMPLES_PER_OPERATION, "hypothesis ran fewer cases than asked"
    if mode is GenerationMode.POSITIVE:
        assert any(k.endswith("-> 200") for k in tried), "no generated valid request was accepted: schema is off"
    assert service.alive() and http_status(f"{service.url}/health") == 200


# -- hand-written -----------------------------------------------------------------------------------------------

GOOD = {"latency_ms": 120.0, "error_rate": 0.01, "service": "api"}


def raw_request(port: int, head: bytes, body_chunks: list[bytes], timeout_s: float = 30) -> int:
    """Send bytes as they are (no client fixing anything up); the status code answered, or 0 if the server hung up."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout_s) as sock:
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the whole body is sent: read its answer
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def post(port: int, path: str, body: bytes, content_type: str | None = "application/json", **headers: str) -> int:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=60)
    try:
        sent = {"Content-Type": content_type} if content_type else {}
        connection.request("POST", path, body=body, headers={**sent, **headers})
        return connection.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        connection.close()


def case_bodies() -> dict[str, tuple[bytes, str | None, dict[str, str], set[int]]]:
    """name -> (body, content type, extra headers, acceptable statuses)."""
    event = orjson.dumps(GOOD)
    invalid = {422}
    return {
        "valid event (control)": (event, "application/json", {}, {200}),
        "10 MB body": (
            b'{"latency_ms": 1, "error_rate": 0, "service": "' + b"a" * 10_000_000 + b'"}',
            "application/json",
            {},
            {413},
        ),
        "10 MB batch": (b"[" + b",".join([event] * 200_000) + b"]", "application/json", {}, {413}),
        "100k-deep JSON": (b"[" * 100_000 + b"]" * 100_000, "application/json", {}, invalid),
        "100k-deep objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json", {}, invalid),
        "1e400": (b'{"latency_ms": 1e400, "error_rate": 0.1}', "application/json", {}, invalid),
        "-1e400": (b'{"latency_ms": 1, "error_rate": -1e400}', "application/json", {}, invalid),
        "NaN": (b'{"latency_ms": NaN, "error_rate": 0.1}', "application/json", {}, invalid),
        "Infinity": (b'{"latency_ms": Infinity, "error_rate": 0.1}', "application/json", {}, invalid),
        "-0": (b'{"latency_ms": -0, "error_rate": -0.0}', "application/json", {}, {200}),
        "huge int": (b'{"latency_ms": ' + b"9" * 5000 + b', "error_rate": 0.1}', "application/json", {}, {200, 422}),
        "1e308": (b'{"latency_ms": 1e308, "error_rate": 1}', "application/json", {}, {200}),
        "5e-324": (b'{"latency_ms": 5e-324, "error_rate": 5e-324}', "application/json", {}, {200}),
        "string number": (b'{"latency_ms": "120", "error_rate": 0.1}', "application/json", {}, invalid),
        "bool number": (b'{"latency_ms": true, "error_rate": 0.1}', "application/json", {}, invalid),
        "null fields": (b'{"latency_ms": null, "error_rate": null}', "application/json", {}, invalid),
        "empty body": (b"", "application/json", {}, invalid),
        "whitespace body": (b"   \n", "application/json", {}, invalid),
        "invalid UTF-8": (
            b'{"latency_ms": 1, "error_rate": 0, "service": "\xff\xfe"}',
            "application/json",
            {},
            invalid,
        ),
        "lone surrogate": (
            b'{"latency_ms": 1, "error_rate": 0, "service": "\\ud800"}',
            "application/json",
            {},
            {200, 422},
        ),
        "NUL in service": (
            b'{"latency_ms": 1, "error_rate": 0, "service": "a\\u0000b"}',
            "application/json",
            {},
            {200},
        ),
        "duplicate keys": (b'{"latency_ms": 1, "latency_ms": -1, "error_rate": 0}', "application/json", {}, invalid),
        "BOM": (b"\xef\xbb\xbf" + event, "application/json", {}, invalid),
        "array for /predict": (b"[1, 2]", "application/json", {}, invalid),
        "text/plain": (event, "text/plain", {}, {415}),
        "form": (b"latency_ms=1&error_rate=0", "application/x-www-form-urlencoded", {}, {415}),
        "multipart": (b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", {}, {415}),
        "no content type": (event, None, {}, {415}),
        # A control character is not a legal header value: the HTTP parser may refuse the request itself (400).
        "garbage content type": (event, "\x01;;==;", {}, {400, 415}),
        "gzip garbage": (b"\x1f\x8b\x08\x00garbage", "application/json", {"Content-Encoding": "gzip"}, {415, 422}),
        "gzip of a valid event": (gzip.compress(event), "application/json", {"Content-Encoding": "gzip"}, {415, 422}),
        "wrong API key (no key configured)": (event, "application/json", {"X-API-Key": "x" * 10_000}, {200, 431}),
    }


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_hand_written_bad_requests_are_4xx_never_5xx(service: MLServiceProcess, path: str) -> None:
    answers: dict[str, int] = {}
    for name, (body, content_type, headers, acceptable) in case_bodies().items():
        if path == "/predict/batch" and body.startswith(b"{"):
            body = b"[" + body + b"]"  # the same event inside a batch
        status = post(service.port, path, body, content_type, **headers)
        answers[name] = status
        if path == "/predict/batch" and name == "array for /predict":
            acceptable = {422}
        assert status in acceptable, f"{path} {name}: answered {status}, expected one of {acceptable}"
    print(f"\n[fuzz] {path}: {len(answers)} hand-written cases, answers {dict(Counter(answers.values()))}")
    assert service.alive() and http_status(f"{service.url}/health") == 200


def test_bodies_beyond_the_limit_are_refused_before_being_read(service: MLServiceProcess) -> None:
    """A lying or missing Content-Length cannot make the service read (and hold) more than MAX_BODY_BYTES."""
    port = service.port
    one_mib = b"a" * (1024 * 1024)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(one_mib), one_mib) for _ in range(12)) + b"0\r\n\r\n"
    head = f"POST /predict HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n".encode()
    statuses = {
        "chunked, 12 MiB": raw_request(port, head + b"Transfer-Encoding: chunked\r\n\r\n", [chunked]),
        "declared 10 GB": raw_request(port, head + b"Content-Length: 10000000000\r\n\r\n", [b"{}"]),
        "declared 2 MiB, sent 2 MiB": raw_request(port, head + b"Content-Length: 2097152\r\n\r\n", [one_mib, one_mib]),
        "negative length": raw_request(port, head + b"Content-Length: -1\r\n\r\n", [b"{}"]),
    }
    print(f"\n[fuzz] oversized bodies: {statuses}")
    assert statuses["chunked, 12 MiB"] == 413
    assert statuses["declared 10 GB"] == 413
    assert statuses["declared 2 MiB, sent 2 MiB"] == 413
    assert statuses["negative length"] in (0, 400)  # the HTTP layer refuses it or hangs up; never a 5xx
    assert service.alive() and http_status(f"{service.url}/health") == 200


def test_service_log_shows_no_unexpected_error(service: MLServiceProcess) -> None:
    log = service.log_text()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
    assert Path(service.log_path).exists()
