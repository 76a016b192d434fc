"""The context model over HTTP: /model describes it, items with ``context`` are scored by it, bad contexts get 422."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ml_service.app import create_app
from ml_service.errors import ModelIntegrityError
from ml_service.model import ModelBundle, load_bundle, metadata_path_for
from ml_service.settings import MLSettings

from eventbus.scoring_wire import decode_answer, encode_batch
from streaming_detector import ContextConfig, ContextTracker
from tests.conftest import run_in_fresh_python
from tests.ml_context import save_small_bundle

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_bundle(tmp_path_factory.mktemp("context-api"), seed=2)


@pytest.fixture(scope="module")
def bundle(model_path: Path) -> ModelBundle:
    return load_bundle(model_path)


@pytest.fixture(scope="module")
def client(model_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(MLSettings(model_path=model_path))) as client:
        yield client


def post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(path, content=json.dumps(body), headers=JSON)


def real_contexts(bundle: ModelBundle, count: int) -> np.ndarray:
    """Context features of a healthy stream then a x6 latency spike, as the processor computes them."""
    tracker = ContextTracker(ContextConfig(**bundle.context_metadata["context"]))
    latency = np.r_[np.random.default_rng(1).lognormal(np.log(200), 0.2, count - 1), 1200.0]
    features, warm = tracker.features(["svc"] * count, latency, np.full(count, 0.01))
    assert warm[-1]
    return features[-5:]


def test_model_info_describes_the_context_model(client: TestClient, bundle: ModelBundle) -> None:
    info = client.get("/model").json()
    context = info["context"]
    assert context["features"] == bundle.context_features and len(context["features"]) >= 2
    assert context["threshold"] == bundle.context_threshold
    assert ContextConfig(**context["context"]) == ContextConfig(**bundle.context_metadata["context"])
    assert context["gate"] == {
        "threshold": bundle.context_threshold,
        "cooldown_events": bundle.context_metadata["training"]["cooldown_events"],
    }
    assert info["version"] == bundle.version


def test_context_items_are_scored_by_the_context_model_and_others_by_the_point_model(
    client: TestClient, bundle: ModelBundle
) -> None:
    contexts = real_contexts(bundle, 200)  # 4 healthy, then the spike
    point_items = [{"latency_ms": 205.0, "error_rate": 0.004}, {"latency_ms": 250.0, "error_rate": 0.4}]
    body = [
        point_items[0],
        {"latency_ms": 200.0, "error_rate": 0.01, "context": contexts[0].tolist()},
        point_items[1],
        *({"latency_ms": 200.0, "error_rate": 0.01, "context": row.tolist()} for row in contexts[1:]),
    ]
    answer = post(client, "/predict/batch", body)
    assert answer.status_code == 200, answer.text
    verdicts = answer.json()
    context_anomaly, context_score = bundle.predict_context(contexts)
    point_anomaly, point_score = bundle.predict(np.array([205.0, 250.0]), np.array([0.004, 0.4]))
    got_context = [verdicts[1], *verdicts[3:]]
    assert [v["score"] for v in got_context] == pytest.approx(context_score.tolist())
    assert [v["anomaly"] for v in got_context] == context_anomaly.tolist()
    assert [verdicts[0]["score"], verdicts[2]["score"]] == pytest.approx(point_score.tolist())
    assert [verdicts[0]["anomaly"], verdicts[2]["anomaly"]] == point_anomaly.tolist() == [False, True]
    # The spike is flagged by the context model; the same latency in a healthy context is not.
    assert got_context[-1]["anomaly"] and not any(v["anomaly"] for v in got_context[:-1])
    assert all(v["model_version"] == bundle.version for v in verdicts)


def test_predict_one_event_with_context(client: TestClient, bundle: ModelBundle) -> None:
    spike = real_contexts(bundle, 200)[-1]
    answer = post(client, "/predict", {"latency_ms": 1200.0, "error_rate": 0.01, "context": spike.tolist()})
    assert answer.status_code == 200
    assert answer.json()["score"] == pytest.approx(float(bundle.predict_context(spike[None, :])[1][0]))


@pytest.mark.parametrize(
    ("context", "where"),
    [
        ("short", "body[1].context: should have"),
        ("long", "body[1].context: should have"),
        ([], "body[1].context: List should have at least 1 item"),
        (["nan"], "body[1].context[0]: Input should be a finite number"),
        (["1.0"], "body[1].context[0]: Input should be a valid number"),
        ([True], "body[1].context[0]: Input should be a valid number"),
        ("null", "body[1].context: Input should be a valid"),
        ("1e400", "body[1].context[0]: Input should be a finite number"),
    ],
)
def test_bad_contexts_get_422_naming_the_field(
    client: TestClient, bundle: ModelBundle, context: Any, where: str
) -> None:
    width = len(bundle.context_features)
    item: dict[str, Any] = {"latency_ms": 200.0, "error_rate": 0.01}
    if context == "short":
        raw = json.dumps([0.5] * (width - 1))
    elif context == "long":
        raw = json.dumps([0.5] * (width + 1))
    elif context == ["nan"]:
        raw = "[NaN" + ", 0.5" * (width - 1) + "]"
    elif context == "null":
        raw = "null"
    elif context == "1e400":
        raw = "[1e400" + ", 0.5" * (width - 1) + "]"
    else:
        raw = json.dumps(context + [0.5] * (width - 1) if context else context)
    good = json.dumps({**item, "context": [0.5] * width})
    body = f'[{good}, {json.dumps(item)[:-1]}, "context": {raw}}}]'
    answer = client.post("/predict/batch", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    assert where in answer.json()["detail"]


def test_wrong_length_on_predict_names_the_field(client: TestClient, bundle: ModelBundle) -> None:
    answer = post(client, "/predict", {"latency_ms": 200.0, "error_rate": 0.01, "context": [0.5]})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(f"body.context: should have {len(bundle.context_features)} features")


def test_a_point_only_model_file_is_refused_with_what_to_do(model_path: Path, tmp_path: Path) -> None:
    old = tmp_path / "model.joblib"
    old.write_bytes(model_path.read_bytes())
    manifest = json.loads(metadata_path_for(model_path).read_text())
    manifest["format"] = 1
    del manifest["context"]
    metadata_path_for(old).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match=r"format-1 model.*retrain with `python save_model.py`"):
        load_bundle(old)


def test_context_metadata_edited_in_the_json_is_refused(model_path: Path, tmp_path: Path) -> None:
    edited = tmp_path / "model.joblib"
    edited.write_bytes(model_path.read_bytes())
    manifest = json.loads(metadata_path_for(model_path).read_text())
    manifest["context"]["threshold"] = 1000.0
    metadata_path_for(edited).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="context metadata"):
        load_bundle(edited)


def test_a_loaded_model_has_its_compiled_forest_walk_ready_before_the_first_request(model_path: Path) -> None:
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from streaming_detector import kernels\n"
        "from ml_service.store import ModelStore\n"
        "ModelStore(Path(sys.argv[1])).load()\n"
        "print(len(kernels.forest_path_lengths.signatures))\n"
    )
    assert run_in_fresh_python(probe, str(model_path)).split() == ["1"]


BINARY = "application/vnd.log-pipeline.scoring-batch"


def test_a_binary_batch_gets_the_verdicts_a_json_batch_gets(client: TestClient, bundle: ModelBundle) -> None:
    contexts = real_contexts(bundle, 200)
    latency = [205.0, 200.0, 250.0, *([200.0] * 4)]
    errors = [0.004, 0.01, 0.4, *([0.01] * 4)]
    rows: list[tuple[float, ...] | None] = [None, tuple(contexts[0]), None, *(tuple(row) for row in contexts[1:])]
    body = encode_batch(latency, errors, rows)
    items = [
        {"latency_ms": lat, "error_rate": err, **({"context": list(row)} if row else {})}
        for lat, err, row in zip(latency, errors, rows, strict=True)
    ]
    as_json = post(client, "/predict/batch", items).json()

    binary = client.post("/predict/batch", content=body, headers={"Content-Type": BINARY, "Accept": BINARY})
    assert binary.status_code == 200 and binary.headers["content-type"] == BINARY
    anomaly, score, version = decode_answer(binary.content, len(items))
    assert anomaly == [v["anomaly"] for v in as_json] and any(anomaly)
    assert score == [v["score"] for v in as_json]
    assert version == bundle.version
    # Sent binary, but asked for JSON (or nothing): the answer is the JSON one.
    for headers in ({"Content-Type": BINARY, "Accept": "application/json"}, {"Content-Type": BINARY}):
        answer = client.post("/predict/batch", content=body, headers=headers)
        assert answer.headers["content-type"] == "application/json" and answer.json() == as_json


def test_a_bad_binary_batch_gets_422_naming_why_and_predict_takes_only_json(
    client: TestClient, bundle: ModelBundle
) -> None:
    headers = {"Content-Type": BINARY, "Accept": BINARY}
    width = len(bundle.context_features)
    bad = client.post("/predict/batch", content=encode_batch([-1.0], [0.0]), headers=headers)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/json"
    assert bad.json()["detail"] == "body: latency_ms must be >= 0 (event 0)"
    short = client.post("/predict/batch", content=encode_batch([1.0], [0.0], [(0.5,) * (width - 1)]), headers=headers)
    assert short.status_code == 422 and "body[0].context: should have" in short.json()["detail"]
    one = client.post("/predict", content=encode_batch([1.0], [0.0]), headers=headers)
    assert one.status_code == 415
