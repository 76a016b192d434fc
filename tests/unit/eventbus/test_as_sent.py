"""``LogEvent.as_sent``, read straight from the model's fields, is exactly pydantic's ``exclude_unset`` dump."""

import orjson
import pytest

from eventbus import EventOrigin, LogEvent, parse_event

ORIGINAL = {"timestamp": 1767225600.25, "service": "auth", "latency_ms": 250, "error_rate": 0.4}


@pytest.mark.parametrize(
    "sent",
    [
        ORIGINAL,
        {"service": "auth", "latency_ms": 1.5, "error_rate": 0.0},  # no timestamp: the message's stands in
        {**ORIGINAL, "event_id": "e-1", "label": "spike", "timestamp": "2026-01-01T00:00:00Z"},
        {"host": "h1", **ORIGINAL, "tags": {"zone": ["a", "b"]}, "trace_id": None},  # extra fields, nested too
        {**ORIGINAL, "anomaly": True, "score": 9.0},  # a producer's own verdict-named fields are kept as sent
    ],
)
def test_as_sent_is_the_exclude_unset_dump_in_the_same_order(sent: dict[str, object]) -> None:
    for event in (
        parse_event(orjson.dumps(sent)),
        LogEvent.model_validate_json(orjson.dumps(sent), context=EventOrigin("logs", 2, 7, 1767225600.0)),
    ):
        expected = event.model_dump(exclude_unset=True)
        assert event.as_sent() == expected
        assert list(event.as_sent()) == list(expected)
        assert orjson.dumps(event.as_sent()) == orjson.dumps(expected)
        assert set(event.as_sent()) == set(sent)  # what was sent, nothing the processor derived


def test_as_sent_gives_a_new_dict_each_time() -> None:
    event = parse_event(orjson.dumps(ORIGINAL))
    first = event.as_sent()
    first["event_id"] = "changed"
    assert "event_id" not in event.as_sent()
