"""The HTTP API through FastAPI's TestClient: every route, every class of bad input, keys, reload, metrics."""

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ml_service.app import create_app
from ml_service.model import load_bundle, metadata_path_for, save_bundle, train_model
from ml_service.settings import MLSettings
from ml_service.training import simulated_training_data

from tests.ml_context import small_context_model

JSON = {"Content-Type": "application/json"}
HEALTHY = {"latency_ms": 205.0, "error_rate": 0.004}
BURST = {"latency_ms": 250, "error_rate": 0.4}  # the original README's example: a 40% error rate

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def _train(path: Path, seed: int) -> None:
    data = simulated_training_data(3000, seed=seed)
    forest, metadata = train_model(data.latency_ms, data.error_rate, source=data.source, seed=seed)
    save_bundle(forest, metadata, *small_context_model(seed), path)


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api-model") / "model.joblib"
    _train(path, seed=5)
    return path


@pytest.fixture
def model_path(trained_model: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model: tests may retrain, damage or delete it."""
    path = tmp_path / "model.joblib"
    path.write_bytes(trained_model.read_bytes())
    metadata_path_for(path).write_bytes(metadata_path_for(trained_model).read_bytes())
    return path


@pytest.fixture
def make_client(model_path: Path) -> ClientFactory:
    @contextmanager
    def factory(raise_server_exceptions: bool = True, **overrides: Any) -> Iterator[TestClient]:
        settings = MLSettings(**{"model_path": model_path, **overrides})
        with TestClient(create_app(settings), raise_server_exceptions=raise_server_exceptions) as client:
            yield client

    return factory


@pytest.fixture(scope="module")
def client(trained_model: Path) -> Iterator[TestClient]:
    """One app for the tests that only read: counters and model are shared, so assert nothing global."""
    with TestClient(create_app(MLSettings(model_path=trained_model))) as client:
        yield client


def post_json(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, content=json.dumps(body), headers={**JSON, **headers})


# --- routes -----------------------------------------------------------------------------------


def test_health_and_ready(client: TestClient, trained_model: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model_version": load_bundle(trained_model).version}


def test_predict_answers_exactly_the_three_fields(client: TestClient, trained_model: Path) -> None:
    response = post_json(client, "/predict", BURST)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"anomaly", "score", "model_version"}
    assert body["model_version"] == load_bundle(trained_model).version


def test_predict_flags_an_error_burst_and_not_healthy_traffic(client: TestClient, trained_model: Path) -> None:
    bundle = load_bundle(trained_model)
    burst = post_json(client, "/predict", BURST).json()
    healthy = post_json(client, "/predict", HEALTHY).json()
    assert burst["anomaly"] is True and healthy["anomaly"] is False
    assert burst["score"] > bundle.metadata.threshold >= healthy["score"]


def test_predict_score_is_the_models_score(client: TestClient, trained_model: Path) -> None:
    bundle = load_bundle(trained_model)
    event = {"latency_ms": 480.5, "error_rate": 0.02}
    expected = -bundle.forest.score_samples(np.array([[480.5, 0.02]]))[0]
    assert post_json(client, "/predict", event).json()["score"] == pytest.approx(expected, rel=1e-12)


def test_predict_accepts_a_whole_log_event_and_ignores_its_label(client: TestClient) -> None:
    event = {
        "event_id": "e-1",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "service": "payment",
        "latency_ms": 900.0,
        "error_rate": 0.01,
    }
    as_normal = post_json(client, "/predict", {**event, "label": "normal"})
    as_anomaly = post_json(client, "/predict", {**event, "label": "latency_spike"})
    unlabelled = post_json(client, "/predict", event)
    assert as_normal.status_code == as_anomaly.status_code == unlabelled.status_code == 200
    assert as_normal.json() == as_anomaly.json() == unlabelled.json()


def test_batch_matches_single_predictions_in_order(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    events = [
        {"latency_ms": float(lat), "error_rate": float(err)}
        for lat, err in zip(rng.uniform(50, 2000, 40), rng.uniform(0, 0.5, 40), strict=True)
    ]
    batch = post_json(client, "/predict/batch", events)
    assert batch.status_code == 200
    singles = [post_json(client, "/predict", e).json() for e in events]
    assert batch.json() == singles


def test_empty_batch_answers_an_empty_list(client: TestClient) -> None:
    response = post_json(client, "/predict/batch", [])
    assert response.status_code == 200 and response.json() == []


def test_model_info(client: TestClient, trained_model: Path) -> None:
    bundle = load_bundle(trained_model)
    info = client.get("/model").json()
    assert info["version"] == bundle.version and info["sha256"] == bundle.sha256
    assert info["features"] == ["latency_ms", "error_rate"]
    assert info["threshold"] == bundle.metadata.threshold
    assert info["contamination"] == bundle.metadata.contamination
    assert info["trained_at"] == bundle.metadata.trained_at
    assert info["training"]["rows"] == 3000
    assert set(info["training"]["features"]["latency_ms"]) == {"mean", "std", "min", "max"}


def test_openapi_documents_the_batch_cap(make_client: ClientFactory) -> None:
    with make_client(predict_batch_max=321) as client:
        schema = client.get("/openapi.json").json()
    batch = schema["paths"]["/predict/batch"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["maxItems"] == 321
    assert "PREDICT_BATCH_MAX" in batch["description"]
    assert "latency_ms" in json.dumps(schema["paths"]["/predict"]["post"]["requestBody"])


# --- bad input: never a 500 -------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000

BAD_PREDICT_BODIES = [
    pytest.param(b'{"error_rate": 0.1}', "body.latency_ms: Field required", id="missing-latency"),
    pytest.param(b'{"latency_ms": 200}', "body.error_rate: Field required", id="missing-error-rate"),
    pytest.param(
        b'{"latency_ms": "250", "error_rate": 0.1}',
        "body.latency_ms: Input should be a valid number",
        id="string-number",
    ),
    pytest.param(
        b'{"latency_ms": true, "error_rate": 0.1}', "body.latency_ms: Input should be a valid number", id="bool"
    ),
    pytest.param(b'{"latency_ms": null, "error_rate": 0.1}', "body.latency_ms", id="null"),
    pytest.param(
        b'{"latency_ms": NaN, "error_rate": 0.1}', "body.latency_ms: Input should be a finite number", id="nan"
    ),
    pytest.param(
        b'{"latency_ms": Infinity, "error_rate": 0.1}', "body.latency_ms: Input should be a finite number", id="inf"
    ),
    pytest.param(b'{"latency_ms": 200, "error_rate": -Infinity}', "body.error_rate", id="minus-inf"),
    pytest.param(
        b'{"latency_ms": 1e400, "error_rate": 0.1}', "body.latency_ms: Input should be a finite number", id="1e400"
    ),
    pytest.param(
        b'{"latency_ms": -1, "error_rate": 0.1}',
        "body.latency_ms: Input should be greater than or equal to 0",
        id="negative",
    ),
    pytest.param(
        b'{"latency_ms": 200, "error_rate": 1.5}',
        "body.error_rate: Input should be less than or equal to 1",
        id="rate>1",
    ),
    pytest.param(
        b'{"latency_ms": 200, "error_rate": -0.1}',
        "body.error_rate: Input should be greater than or equal to 0",
        id="rate<0",
    ),
    pytest.param(b'{"latency_ms": [200], "error_rate": 0.1}', "body.latency_ms", id="list-for-number"),
    pytest.param(b'{"latency_ms": {"v": 1}, "error_rate": 0.1}', "body.latency_ms", id="object-for-number"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1, "service": ""}', "body.service", id="empty-service"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1, "service": 7}', "body.service", id="number-for-string"),
    pytest.param(
        b'{"latency_ms": 200, "error_rate": 0.1, "label": "' + b"x" * 65 + b'"}', "body.label", id="long-label"
    ),
    pytest.param(b'[{"latency_ms": 200, "error_rate": 0.1}]', "body: Input should be an object", id="array-for-object"),
    pytest.param(b'"hello"', "body: Input should be an object", id="string-body"),
    pytest.param(b"null", "body: Input should be an object", id="null-body"),
    pytest.param(b"", "Invalid JSON", id="empty-body"),
    pytest.param(b"latency=200&error_rate=0.1", "Invalid JSON", id="form-data"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1', "Invalid JSON", id="truncated"),
    pytest.param(b"\xff\xfe\x00{", "Invalid JSON", id="binary"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1, "service": "\\ud800"}', "body", id="lone-surrogate"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1, "timestamp": "noon"}', "body.timestamp", id="time-words"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1, "timestamp": -1.5}', "body.timestamp", id="time-negative"),
    pytest.param(b'{"latency_ms": 200, "error_rate": 0.1, "timestamp": true}', "body.timestamp", id="time-bool"),
    pytest.param(DEEP, "Invalid JSON: recursion limit", id="deep-array"),
    pytest.param(DEEP_OBJECT, "Invalid JSON: recursion limit", id="deep-object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_PREDICT_BODIES)
def test_bad_predict_bodies_are_422_naming_the_field(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_422_lists_errors_without_echoing_the_input(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"latency_ms": "secret-ish-value", "error_rate": 2}', headers=JSON)
    body = response.json()
    assert [e["loc"] for e in body["errors"]] == [["body", "latency_ms"], ["body", "error_rate"]]
    assert "secret-ish-value" not in response.text


def test_huge_integer_is_a_finite_float(client: TestClient) -> None:
    response = client.post("/predict", content=b'{"latency_ms": 1' + b"0" * 300 + b', "error_rate": 0.1}', headers=JSON)
    assert response.status_code == 200 and response.json()["anomaly"] is True


BAD_BATCHES = [
    pytest.param(
        b'{"latency_ms": 200, "error_rate": 0.1}', "body: Input should be a valid array", id="object-for-array"
    ),
    pytest.param(
        b'[{"latency_ms": 200, "error_rate": 0.1}, {"latency_ms": -5, "error_rate": 0.1}]',
        "body[1].latency_ms",
        id="bad-item",
    ),
    pytest.param(
        b'[{"latency_ms": 200, "error_rate": 0.1}, 5]', "body[1]: Input should be an object", id="number-item"
    ),
    pytest.param(
        b'[{"latency_ms": 200, "error_rate": NaN}]',
        "body[0].error_rate: Input should be a finite number",
        id="nan-item",
    ),
    pytest.param(b"[[[[]]]]", "body[0]: Input should be an object", id="nested-arrays"),
    pytest.param(DEEP, "Invalid JSON: recursion limit", id="deep"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BATCHES)
def test_bad_batches_are_422_naming_index_and_field(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/predict/batch", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_batch_over_the_cap_is_422(make_client: ClientFactory) -> None:
    with make_client(predict_batch_max=5) as client:
        response = post_json(client, "/predict/batch", [HEALTHY] * 6)
        assert post_json(client, "/predict/batch", [HEALTHY] * 5).status_code == 200
    assert response.status_code == 422
    assert "body: List should have at most 5 items" in response.json()["detail"]


def test_a_batch_of_bad_items_lists_the_first_errors_and_counts_the_rest(client: TestClient) -> None:
    response = post_json(client, "/predict/batch", [{"latency_ms": -1, "error_rate": 2}] * 50)
    assert response.status_code == 422
    assert len(response.json()["errors"]) == 20
    assert "and 80 more errors" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
        pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form"),
        pytest.param({"Content-Type": "multipart/form-data; boundary=x"}, id="multipart"),
        pytest.param({}, id="none"),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_non_json_content_type_is_415(client: TestClient, headers: dict[str, str], path: str) -> None:
    response = client.post(path, content=json.dumps(HEALTHY), headers=headers)
    assert response.status_code == 415
    assert "Content-Type must be application/json" in response.json()["detail"]


def test_json_with_charset_and_vendor_json_types_are_accepted(client: TestClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = client.post("/predict", content=json.dumps(HEALTHY), headers={"Content-Type": content_type})
        assert response.status_code == 200, content_type


def test_body_over_max_body_bytes_is_413(client: TestClient) -> None:
    ten_mb = b'{"latency_ms": 200, "error_rate": 0.1, "service": "' + b"x" * 10_000_000 + b'"}'
    for path in ("/predict", "/predict/batch"):
        response = client.post(path, content=ten_mb, headers=JSON)
        assert response.status_code == 413
        assert "MAX_BODY_BYTES=4194304" in response.json()["detail"]


def test_chunked_body_is_counted_as_it_arrives(make_client: ClientFactory) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        yield b'[{"latency_ms": 200, "error_rate": 0.1, "service": "'
        for _ in range(total // 1000):
            yield b"x" * 1000
        yield b'"}]'

    with make_client(max_body_bytes=50_000) as client:
        too_big = client.post("/predict/batch", content=chunks(60_000), headers=JSON)
        # a small chunked body is fine (its service name is over-long, so 422 -- but it was read and parsed)
        small = client.post("/predict/batch", content=chunks(2_000), headers=JSON)
    assert "content-length" not in {k.lower() for k in too_big.request.headers}
    assert too_big.status_code == 413
    assert small.status_code == 422 and "body[0].service" in small.json()["detail"]


# --- no model ---------------------------------------------------------------------------------


def test_without_a_model_ready_predict_and_model_answer_503(make_client: ClientFactory, tmp_path: Path) -> None:
    with make_client(model_path=tmp_path / "absent" / "model.joblib") as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        predict = post_json(client, "/predict", HEALTHY)
        batch = post_json(client, "/predict/batch", [HEALTHY])
        info = client.get("/model")
    assert ready.status_code == predict.status_code == batch.status_code == info.status_code == 503
    assert "no model at" in ready.json()["detail"] and "save_model.py" in predict.json()["detail"]


def test_tampered_model_starts_unready_with_the_reason(make_client: ClientFactory, model_path: Path) -> None:
    data = bytearray(model_path.read_bytes())
    data[1000] ^= 0xFF
    model_path.write_bytes(bytes(data))
    with make_client() as client:
        ready = client.get("/ready")
        predict = post_json(client, "/predict", HEALTHY)
    assert ready.status_code == 503 and "sha256" in ready.json()["detail"]
    assert predict.status_code == 503


# --- keys and reload --------------------------------------------------------------------------


def test_scoring_key_when_configured(make_client: ClientFactory) -> None:
    with make_client(ml_scoring_api_key="s3cr3t-scoring") as client:
        missing = post_json(client, "/predict", HEALTHY)
        wrong = post_json(client, "/predict/batch", [HEALTHY], **{"X-API-Key": "nope"})
        non_ascii = client.post(
            "/predict", content=json.dumps(HEALTHY), headers={**JSON, "X-API-Key": "clé".encode("latin-1")}
        )
        right = post_json(client, "/predict", HEALTHY, **{"X-API-Key": "s3cr3t-scoring"})
        right_batch = post_json(client, "/predict/batch", [HEALTHY], **{"X-API-Key": "s3cr3t-scoring"})
        health = client.get("/health")
    assert missing.status_code == wrong.status_code == non_ascii.status_code == 401
    assert right.status_code == right_batch.status_code == health.status_code == 200


def test_scoring_is_open_when_no_scoring_key_is_set(client: TestClient) -> None:
    assert post_json(client, "/predict", HEALTHY, **{"X-API-Key": "anything"}).status_code == 200


def test_reload_is_disabled_without_ml_api_key(client: TestClient) -> None:
    response = client.post("/model/reload", headers={"X-API-Key": "whatever"})
    assert response.status_code == 403
    assert response.json()["detail"] == "reload disabled: set ML_API_KEY"


def test_reload_needs_the_right_key_and_never_logs_it(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with make_client(ml_api_key="admin-key-123") as client:
        missing = client.post("/model/reload")
        wrong = client.post("/model/reload", headers={"X-API-Key": "admin-key-12"})
        right = client.post("/model/reload", headers={"X-API-Key": "admin-key-123"})
    assert missing.status_code == wrong.status_code == 401
    assert right.status_code == 200
    assert right.json()["changed"] is False
    assert "admin-key-12" not in caplog.text


def test_reload_swaps_in_a_retrained_model(make_client: ClientFactory, model_path: Path) -> None:
    with make_client(ml_api_key="k") as client:
        before = client.get("/model").json()["version"]
        _train(model_path, seed=6)
        reload = client.post("/model/reload", headers={"X-API-Key": "k"})
        after = client.get("/model").json()["version"]
        verdict = post_json(client, "/predict", HEALTHY).json()
    assert reload.status_code == 200
    assert reload.json() == {"model_version": after, "previous_version": before, "changed": True}
    assert after != before and verdict["model_version"] == after == load_bundle(model_path).version


def test_reload_of_a_tampered_file_is_refused_and_keeps_serving(make_client: ClientFactory, model_path: Path) -> None:
    with make_client(ml_api_key="k") as client:
        before = client.get("/model").json()["version"]
        data = bytearray(model_path.read_bytes())
        data[-10] ^= 0x01
        model_path.write_bytes(bytes(data))
        reload = client.post("/model/reload", headers={"X-API-Key": "k"})
        ready = client.get("/ready")
        verdict = post_json(client, "/predict", HEALTHY)
    assert reload.status_code == 409
    assert "sha256" in reload.json()["detail"] and f"still serving {before}" in reload.json()["detail"]
    assert ready.status_code == 200 and verdict.status_code == 200
    assert verdict.json()["model_version"] == before


def test_reload_brings_an_unready_service_up(make_client: ClientFactory, model_path: Path, tmp_path: Path) -> None:
    later = tmp_path / "later" / "model.joblib"
    with make_client(model_path=later, ml_api_key="k") as client:
        assert client.get("/ready").status_code == 503
        later.parent.mkdir()
        later.write_bytes(model_path.read_bytes())
        metadata_path_for(later).write_bytes(metadata_path_for(model_path).read_bytes())
        reload = client.post("/model/reload", headers={"X-API-Key": "k"})
        ready = client.get("/ready")
    assert reload.status_code == 200 and reload.json()["previous_version"] is None
    assert ready.status_code == 200


# --- metrics and the catch-all ----------------------------------------------------------------


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_count_requests_rows_anomalies_and_model(make_client: ClientFactory, model_path: Path) -> None:
    with make_client() as client:
        post_json(client, "/predict", BURST)
        post_json(client, "/predict/batch", [HEALTHY, BURST, BURST])
        client.post("/predict", content=b"{}", headers=JSON)
        client.get("/no-such-page")
        text = client.get("/metrics").text
    assert _sample(text, 'ml_http_requests_total{method="POST",route="/predict",status="200"}') == 1
    assert _sample(text, 'ml_http_requests_total{method="POST",route="/predict",status="422"}') == 1
    assert _sample(text, 'ml_http_requests_total{method="POST",route="/predict/batch",status="200"}') == 1
    assert _sample(text, 'ml_http_requests_total{method="GET",route="unmatched",status="404"}') == 1
    assert _sample(text, 'ml_http_request_duration_seconds_count{route="/predict"}') == 2
    assert _sample(text, "ml_rows_scored_total") == 4
    assert _sample(text, "ml_anomalies_flagged_total") == 3
    assert _sample(text, f'ml_model_info{{version="{load_bundle(model_path).version}"}}') == 1
    assert _sample(text, "ml_model_loaded") == 1


def test_a_bug_is_a_logged_500_without_details(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with make_client(raise_server_exceptions=False) as client:
        bundle = client.app.state.store.bundle  # type: ignore[attr-defined]

        def broken(*args: object) -> None:
            raise RuntimeError("deliberate bug for the test")

        monkeypatch.setattr(type(bundle), "predict", broken)
        monkeypatch.setattr(type(bundle), "predict_one", broken)
        response = post_json(client, "/predict", HEALTHY)
        batch = post_json(client, "/predict/batch", [HEALTHY])
        metrics = client.get("/metrics").text
    assert response.status_code == batch.status_code == 500
    assert response.json() == batch.json() == {"detail": "internal server error"}
    assert "deliberate bug for the test" in caplog.text
    assert _sample(metrics, 'ml_http_requests_total{method="POST",route="/predict",status="500"}') == 1
    assert _sample(metrics, 'ml_http_requests_total{method="POST",route="/predict/batch",status="500"}') == 1


def test_the_original_designs_event_and_fields_producers_add_are_scored(client: TestClient) -> None:
    """The original processor posts each event as it is: a float timestamp, no id, extra fields of real producers."""
    original = {"timestamp": 1767225600.25, "service": "auth", "latency_ms": 187.2, "error_rate": 0.42}
    for body in (original, {**original, "host": "web-7", "region": "eu", "trace_id": "4bf9", "status": 503}):
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        assert isinstance(response.json()["anomaly"], bool)
    response = client.post("/predict/batch", json=[original, {**original, "timestamp": "2026-01-01T00:00:00Z"}])
    assert response.status_code == 200 and len(response.json()) == 2
