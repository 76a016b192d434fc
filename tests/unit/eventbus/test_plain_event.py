"""``plain_event`` (the processor's hot path, without pydantic) gives the event pydantic gives, or leaves it to it."""

import random
from typing import Any

import orjson
import pytest
from anomaly_processor.ml_client import Score
from anomaly_processor.records import verdict_json
from pydantic import ValidationError

from eventbus import EventOrigin, LogEvent, plain_event

ORIGIN = EventOrigin("logs", 2, 41, 1_765_000_000.5)
ORIGINAL = {"timestamp": 1_765_000_000.25, "service": "auth", "latency_ms": 201.7, "error_rate": 0.31}
SIMULATOR = {
    "timestamp": "2026-12-06T23:00:00.123456+00:00",
    "service": "payment",
    "latency_ms": 198.31,
    "error_rate": 0.00943,
    "label": "normal",
    "event_id": "sim-1",
}
SCORES = [Score(False, 0.25, "v1"), Score(True, 11.5, "v2", incident_id="inc-1")]


def _reference(raw: bytes, origin: EventOrigin | None) -> LogEvent | None:
    """What the processor's decoder did before ``plain_event``: pydantic's JSON validation."""
    try:
        return LogEvent.model_validate_json(raw, context=origin)
    except ValidationError:
        return None


def _fields(event: LogEvent) -> list[tuple[str, Any, type]]:
    return [(name, event.__dict__[name], type(event.__dict__[name])) for name in LogEvent.model_fields]


def _same(fast: LogEvent, reference: LogEvent) -> None:
    """The same event; the reference's verdicts are written before its ``event_time`` is worked out (and kept),
    the fast one's after, so that a cached time cannot move a producer's own ``event_time`` field."""
    verdicts = [verdict_json(reference, score) for score in SCORES]
    sent = reference.as_sent()
    assert _fields(fast) == _fields(reference)
    assert fast.model_fields_set == reference.model_fields_set
    assert fast.model_extra == reference.model_extra
    assert fast.event_time == reference.event_time
    assert fast.as_sent() == sent and list(fast.as_sent()) == list(sent)
    assert fast == reference
    assert [verdict_json(fast, score) for score in SCORES] == verdicts
    assert [verdict_json(reference, score) for score in SCORES] == verdicts


@pytest.mark.parametrize("event", [ORIGINAL, SIMULATOR], ids=["original design", "simulator"])
def test_the_producers_events_take_the_plain_path_and_equal_pydantics(event: dict[str, Any]) -> None:
    raw = orjson.dumps(event)
    fast = plain_event(orjson.loads(raw), ORIGIN)
    reference = _reference(raw, ORIGIN)
    assert fast is not None and reference is not None
    _same(fast, reference)


def _random_event(rng: random.Random) -> dict[str, Any]:
    """Events of every shape the plain path must take or leave: values of each field's forms, fields left out,
    extra fields (named like verdict fields too), field orders."""
    forms: dict[str, list[Any]] = {
        "timestamp": [
            1_765_000_000.5,
            1_765_000_000_123.0,
            1_765_000_000,
            "2026-12-06T23:00:00Z",
            "2026-12-06 23:00",
            "yesterday",
            "",
            -1.0,
            None,
            True,
            0.0,
        ],  # fmt: skip
        "service": ["auth", "a" * 200, "a" * 201, "", 5, None, "pay\u00e9"],
        "latency_ms": [0.0, -0.0, 250.5, 250, -1.0, 1e308, "250", True, None],
        "error_rate": [0.0, 0.4, 1.0, 1, 1.0000001, -0.1, "0.4", None, False],
        "label": ["normal", "spike", "x" * 64, "x" * 65, None, 3],
        "event_id": ["e-1", "", "x" * 200, "x" * 201, None, 7],
    }
    event: dict[str, Any] = {}
    names = list(forms)
    rng.shuffle(names) if rng.random() < 0.3 else None
    for name in names:
        if rng.random() < 0.85 or name in ("service", "latency_ms", "error_rate"):
            # mostly valid values, so that acceptance is compared as much as refusal
            event[name] = forms[name][0 if rng.random() < 0.5 else rng.randrange(len(forms[name]))]
        if name == "timestamp" and rng.random() < 0.1:
            event.pop("timestamp", None)
    for extra in rng.sample(["host", "anomaly", "score", "event_time", "nested", "n"], rng.randrange(4)):
        event[extra] = {"host": "web-1", "anomaly": True, "score": 3.5, "event_time": 1.0, "nested": {"a": [1, 2.5]},
                        "n": None}[extra]  # fmt: skip
    return event


def test_plain_events_equal_pydantics_and_everything_else_is_left_to_it() -> None:
    rng = random.Random(19)
    taken = left = 0
    for _ in range(4000):
        raw = orjson.dumps(_random_event(rng))
        for origin in (ORIGIN, None):
            fast = plain_event(orjson.loads(raw), origin)
            reference = _reference(raw, origin)
            if fast is None:
                left += 1
                continue
            taken += 1
            assert reference is not None, f"plain_event accepted what pydantic refuses: {raw!r}"
            _same(fast, reference)
    assert taken > 500 and left > 1000, "both paths must be exercised for the comparison to mean anything"
