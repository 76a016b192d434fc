"""/predict/batch's bulk reader against pydantic: the same verdicts for valid bodies, the same 422 for bad ones.

The bulk reader (``ml_service.api.columns.columns_from_json``) may only accept bodies pydantic accepts, and must
read the same numbers from them; every other body goes to pydantic, which names the bad fields. Each body here
is answered twice by the real app: as served, and with the bulk reader switched off (pydantic alone).
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ml_service.api import scoring_lane
from ml_service.api.columns import columns_from_json, columns_from_requests
from ml_service.app import create_app
from ml_service.model import load_bundle
from ml_service.schemas import batch_adapter
from ml_service.settings import MLSettings

from tests.ml_context import save_small_bundle

JSON = {"Content-Type": "application/json"}
EVENT = {
    "event_id": "e-1",
    "timestamp": "2026-01-01T00:00:00+00:00",
    "service": "payment",
    "latency_ms": 212.5,
    "error_rate": 0.004,
    "label": "normal",
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_bundle(tmp_path_factory.mktemp("bulk-reader"), seed=4)


@pytest.fixture(scope="module")
def width(model_path: Path) -> int:
    return len(load_bundle(model_path).context_features)


@pytest.fixture(scope="module")
def client(model_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(MLSettings(model_path=model_path, predict_batch_max=50))) as client:
        yield client


def both_answers(client: TestClient, body: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(status, JSON) as served, and with pydantic alone."""
    served = client.post("/predict/batch", content=body, headers=JSON)
    with monkeypatch.context() as patch:
        patch.setattr(scoring_lane, "columns_from_json", lambda body, max_items: None)
        reference = client.post("/predict/batch", content=body, headers=JSON)
    return (served.status_code, served.json()), (reference.status_code, reference.json())


def item(**changes: Any) -> dict[str, Any]:
    """EVENT with fields changed; a value of ``...`` removes the field."""
    event = {**EVENT, **changes}
    return {name: value for name, value in event.items() if value is not ...}


def raw_item(field: str, raw_value: str) -> bytes:
    """EVENT with ``field`` set to a raw JSON text (NaN, 1e400...), as one item's JSON."""
    base = json.dumps(item(**{field: ...}))
    return f'{base[:-1]}, "{field}": {raw_value}}}'.encode()


def batch(*items: dict[str, Any] | bytes) -> bytes:
    parts = [i if isinstance(i, bytes) else json.dumps(i).encode() for i in items]
    return b"[" + b", ".join(parts) + b"]"


VALID = [
    pytest.param(batch(EVENT), id="full-event"),
    pytest.param(batch(*(item(latency_ms=float(v), error_rate=v / 500) for v in range(0, 500, 11))), id="many"),
    pytest.param(batch({"latency_ms": 200, "error_rate": 0}), id="ints-for-floats"),
    pytest.param(batch({"error_rate": 0.1, "latency_ms": 900.0}, EVENT), id="key-order-and-optional-mixed"),
    pytest.param(batch(item(service=None, label=None, event_id=None, timestamp=None)), id="explicit-nulls"),
    pytest.param(batch(item(label=...), item(service=...)), id="some-fields-absent"),
    pytest.param(batch(item(label="😀" * 64), item(service="ß" * 200)), id="unicode-at-max-length"),
    pytest.param(batch(item(label="")), id="empty-label"),
    pytest.param(batch(item(error_rate=1), item(error_rate=0.0, latency_ms=0)), id="bounds-inclusive"),
    pytest.param(batch(raw_item("latency_ms", "-0")), id="minus-zero"),
    pytest.param(batch(raw_item("latency_ms", "1" + "0" * 300)), id="huge-integer"),
    pytest.param(batch(raw_item("latency_ms", "1e308")), id="largest-floats"),
    pytest.param(b'[{"latency_ms": 5, "latency_ms": 300.5, "error_rate": 0.01}]', id="duplicate-key"),
    pytest.param(b"[]", id="empty"),
    pytest.param(
        batch({"timestamp": 1767225600.25, "service": "auth", "latency_ms": 187.2, "error_rate": 0.42}),
        id="original-design-event",
    ),
    pytest.param(batch(item(timestamp=1767225600123), item(timestamp="2026-01-01T00:00:00Z")), id="time-forms"),
    pytest.param(batch(item(host="web-7", trace_id="ab", tags={"a": [1, None]}, cpu=3)), id="extra-fields"),
    pytest.param(b" [\n" + json.dumps(EVENT).encode() + b"\n] ", id="whitespace"),
]


@pytest.mark.parametrize("body", VALID)
def test_valid_bodies_get_the_same_verdicts(client: TestClient, body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    served, reference = both_answers(client, body, monkeypatch)
    assert served[0] == 200, served
    assert served == reference


def test_context_items_get_the_same_verdicts(client: TestClient, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    items = [item(context=rng.normal(0, 2, width).tolist()) if i % 3 else item() for i in range(30)]
    items.append(item(context=[1] * width))  # ints are numbers here too
    served, reference = both_answers(client, batch(*items), monkeypatch)
    assert served[0] == 200 and served == reference


def test_the_bulk_reader_reads_what_pydantic_reads(width: int) -> None:
    rng = np.random.default_rng(5)
    items = [item(latency_ms=float(rng.lognormal(5, 1)), context=rng.normal(0, 1, width).tolist()) for _ in range(20)]
    items += [item(error_rate=float(rng.uniform())) for _ in range(20)]
    body = batch(*items)
    bulk = columns_from_json(body, 100)
    assert bulk is not None
    expected = columns_from_requests(batch_adapter(100).validate_json(body))
    for name in ("latency_ms", "error_rate", "context_rows", "context_lengths", "context_values"):
        assert np.array_equal(getattr(bulk, name), getattr(expected, name)), name


NUMBER_TEXTS = [
    "0.1000000000000000055511151231257827",  # more digits than a double holds: rounds to 0.1
    "2.2250738585072011e-308",  # near the smallest normal double
    "4.9e-324",  # the smallest subnormal
    "1e-400",  # underflows to 0
    "123456789012345678901234567890",  # an integer beyond 64 bits
    "9007199254740993",  # 2**53 + 1: rounds to even
    "1.7976931348623157e308",  # the largest double
    "1.7976931348623159e308",  # just beyond it: refused by both
    "-0.0",
    "1E5",
    "0.5e-0",
]


@pytest.mark.parametrize("text", NUMBER_TEXTS)
def test_the_bulk_reader_rounds_number_texts_as_pydantic_does(text: str) -> None:
    body = f'[{{"latency_ms": {text}, "error_rate": 0.5, "context": [{text}, 1]}}]'.encode()
    bulk = columns_from_json(body, 10)
    try:
        expected = columns_from_requests(batch_adapter(10).validate_json(body))
    except ValueError:  # pydantic refuses it: the bulk reader must not accept it
        assert bulk is None
        return
    assert bulk is not None
    for name in ("latency_ms", "context_values"):
        assert getattr(bulk, name).tobytes() == getattr(expected, name).tobytes(), name  # -0.0 is not 0.0


BAD = [
    pytest.param(b"{}", id="object"),
    pytest.param(b"[5]", id="number-item"),
    pytest.param(b"[[]]", id="array-item"),
    pytest.param(b"[null]", id="null-item"),
    pytest.param(batch(item(latency_ms=...)), id="missing-latency"),
    pytest.param(batch(item(error_rate=...)), id="missing-error-rate"),
    pytest.param(batch(item(latency_ms=None)), id="null-latency"),
    pytest.param(batch(item(latency_ms=True)), id="bool-latency"),
    pytest.param(batch(item(error_rate=False)), id="bool-error-rate"),
    pytest.param(batch(item(latency_ms="250")), id="string-number"),
    pytest.param(batch(item(latency_ms=[1])), id="list-number"),
    pytest.param(batch(raw_item("latency_ms", "NaN")), id="nan"),
    pytest.param(batch(raw_item("error_rate", "Infinity")), id="inf"),
    pytest.param(batch(raw_item("latency_ms", "1e400")), id="1e400"),
    pytest.param(batch(item(latency_ms=-0.001)), id="negative-latency"),
    pytest.param(batch(item(error_rate=1.0001)), id="rate-above-1"),
    pytest.param(batch(item(error_rate=-1e-9)), id="rate-below-0"),
    pytest.param(batch(item(timestamp="noon")), id="time-words"),
    pytest.param(batch(item(timestamp=-2)), id="time-negative"),
    pytest.param(batch(item(context=None)), id="null-context"),
    pytest.param(batch(item(service="")), id="empty-service"),
    pytest.param(batch(item(event_id="")), id="empty-event-id"),
    pytest.param(batch(item(timestamp="t" * 65)), id="long-timestamp"),
    pytest.param(batch(item(label="😀" * 65)), id="long-unicode-label"),
    pytest.param(batch(item(service="s" * 201)), id="long-service"),
    pytest.param(batch(item(service=7)), id="number-service"),
    pytest.param(batch(item(label=True)), id="bool-label"),
    pytest.param(batch(item(), item(latency_ms=-5), item(error_rate=2)), id="bad-items-among-good"),
    pytest.param(batch(*[item()] * 51), id="over-the-cap"),
    pytest.param(batch(item(context=[])), id="empty-context"),
    pytest.param(batch(item(context=[0.5] * 65)), id="context-over-64"),
    pytest.param(batch(item(context="0.5")), id="string-context"),
    pytest.param(batch(item(context={"a": 1})), id="object-context"),
    pytest.param(batch(item(context=[True, 0.5])), id="bool-in-context"),
    pytest.param(batch(item(context=["0.5", 0.5])), id="string-in-context"),
    pytest.param(batch(item(context=[[0.5], 0.5])), id="list-in-context"),
    pytest.param(batch(item(context=[None, 0.5])), id="null-in-context"),
    pytest.param(batch(raw_item("context", "[0.5, NaN]")), id="nan-in-context"),
    pytest.param(batch(raw_item("service", '"\\ud800"')), id="lone-surrogate"),
    pytest.param(b'[{"latency_ms": 1, "error_rate": 0.1}', id="truncated"),
    pytest.param(b"\xef\xbb\xbf[]", id="byte-order-mark"),
    pytest.param(b"\xff[]", id="invalid-utf8"),
    pytest.param(b'[{"latency_ms": 1, "error_rate": 0.1, "service": "\xff\xfe"}]', id="invalid-utf8-in-a-string"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="deep"),
]


@pytest.mark.parametrize("body", BAD)
def test_bad_bodies_get_the_same_422(client: TestClient, body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    served, reference = both_answers(client, body, monkeypatch)
    assert served[0] == 422, served
    assert served == reference
    assert columns_from_json(body, 50) is None  # the bulk reader left it to pydantic


@pytest.mark.parametrize("wrong", [-1, 1])
def test_a_context_of_the_wrong_length_gets_the_same_422(
    client: TestClient, width: int, wrong: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = batch(item(context=[0.5] * width), item(), item(context=[0.5] * (width + wrong)))
    served, reference = both_answers(client, body, monkeypatch)
    assert served == reference
    assert served[0] == 422 and served[1]["detail"].startswith(f"body[2].context: should have {width} features")


@pytest.mark.parametrize("pattern", ["none", "rare", "half", "all", "alternating", "one-row"])
def test_the_batch_answer_is_the_json_of_the_verdicts(pattern: str) -> None:
    rng = np.random.default_rng(7)
    count = 1 if pattern == "one-row" else 1000
    score = rng.uniform(0.2, 1.0, count)
    score[::9] = 1.0  # integral floats keep their ".0"
    anomaly = {
        "none": np.zeros(count, dtype=bool),
        "rare": rng.uniform(size=count) < 0.01,
        "half": rng.uniform(size=count) < 0.5,
        "all": np.ones(count, dtype=bool),
        "alternating": np.arange(count) % 2 == 0,
        "one-row": np.ones(count, dtype=bool),
    }[pattern]
    version = 'iforest-"quoted"'
    expected = [
        {"anomaly": a, "score": s, "model_version": version}
        for a, s in zip(anomaly.tolist(), score.tolist(), strict=True)
    ]
    answer = scoring_lane.verdicts_json(anomaly, score, version)
    assert json.loads(answer) == expected
    assert answer == json.dumps(expected, separators=(",", ":")).encode()


def test_a_deeply_nested_unknown_field_is_left_to_pydantic_not_an_error() -> None:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    assert columns_from_json(b'[{"latency_ms": 1, "error_rate": 0, "extra": ' + deep + b"}]", 10) is None
