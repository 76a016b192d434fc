"""Decoding consumed messages, dead-letter records and verdict records of the processor."""

import base64
import random
from collections.abc import Callable

import orjson
import pytest
from anomaly_processor.ml_client import Score
from anomaly_processor.records import (
    PREVIEW_MAX_CHARS,
    VALUE_MAX_BYTES,
    DeadLetter,
    dead_letter_json,
    decode_batch,
    decode_event,
    verdict_json,
)

from eventbus import EVENT_MAX_BYTES, VERDICT_FIELDS, BadEventError, EventOrigin, LogEvent, Verdict, parse_event
from streaming_detector.profiles import generate_normal_events
from tests.unit.anomaly_processor.consumed import Record

VALID = generate_normal_events(1, seed=3)[0].to_json()


def record(value: bytes | None, key: bytes | None = b"auth", offset: int = 7) -> Record:
    return Record("logs", 2, offset, 1_767_225_600_000, key, value)


def with_field(**changes: object) -> bytes:
    data = orjson.loads(VALID)
    data.update(changes)
    return orjson.dumps(data)


def without_field(name: str) -> bytes:
    data = orjson.loads(VALID)
    del data[name]
    return orjson.dumps(data)


BAD_MESSAGES = {
    "non-JSON": (b"hello, not json", "not JSON"),
    "binary": (bytes(range(256)), "not JSON"),
    "truncated JSON": (VALID[: len(VALID) // 2], "not JSON"),
    "NaN": (VALID.replace(b'"latency_ms":', b'"latency_ms":NaN,"x":'), "not JSON"),
    "latency as a string": (with_field(latency_ms="fast"), "latency_ms"),
    "error rate as a bool": (with_field(error_rate=True), "error_rate"),
    "negative latency": (with_field(latency_ms=-3.0), "latency_ms"),
    "error rate above 1": (with_field(error_rate=1.5), "error_rate"),
    "missing service": (without_field("service"), "service"),
    "missing latency": (without_field("latency_ms"), "latency_ms"),
    "missing error rate": (without_field("error_rate"), "error_rate"),
    "timestamp in words": (with_field(timestamp="yesterday"), "timestamp"),
    "timestamp as a bool": (with_field(timestamp=True), "timestamp"),
    "negative timestamp": (with_field(timestamp=-1), "timestamp"),
    "oversized": (with_field(host="h" * EVENT_MAX_BYTES), "limit"),
    "JSON array": (b"[1, 2]", "not a JSON object"),
    "null value": (None, "null value"),
}


@pytest.mark.parametrize("name", sorted(BAD_MESSAGES))
def test_a_bad_message_becomes_a_dead_letter_naming_why(name: str) -> None:
    value, reason_mentions = BAD_MESSAGES[name]
    batch = decode_batch([record(value)])
    assert batch.events == []
    [(refused, reason)] = batch.refused
    assert reason_mentions in reason

    letter = DeadLetter.model_validate_json(dead_letter_json(refused, reason))

    assert letter.reason == reason
    assert (letter.topic, letter.partition, letter.offset) == ("logs", 2, 7)
    assert letter.timestamp_ms == 1_767_225_600_000
    assert (letter.key, letter.key_encoding) == ("auth", "utf-8")
    assert base64.b64decode(letter.value_b64) == (value or b"")
    assert letter.value_size == (len(value) if value is not None else -1)
    assert not letter.value_truncated
    assert len(letter.value_preview) <= PREVIEW_MAX_CHARS
    if value is not None:
        assert letter.value_preview.startswith(value[:20].decode("utf-8", "replace"))


def test_a_binary_key_is_kept_as_base64_and_a_missing_key_as_null() -> None:
    binary = DeadLetter.model_validate_json(dead_letter_json(record(b"x", key=b"\xff\x00k"), "why"))
    assert binary.key_encoding == "base64"
    assert binary.key is not None and base64.b64decode(binary.key) == b"\xff\x00k"

    none = DeadLetter.model_validate_json(dead_letter_json(record(b"x", key=None), "why"))
    assert (none.key, none.key_encoding) == (None, None)


def test_a_huge_value_is_cut_so_the_dead_letter_fits_in_a_kafka_record() -> None:
    value = b"z" * (VALUE_MAX_BYTES + 10)
    raw = dead_letter_json(record(value), "not JSON")
    letter = DeadLetter.model_validate_json(raw)
    assert letter.value_truncated
    assert letter.value_size == len(value)
    assert base64.b64decode(letter.value_b64) == value[:VALUE_MAX_BYTES]
    assert len(raw) < 1024 * 1024
    assert letter.value_preview.endswith("…") and len(letter.value_preview) == PREVIEW_MAX_CHARS


def test_valid_and_bad_messages_are_split_keeping_their_records() -> None:
    events = generate_normal_events(3, seed=1)
    records = [
        record(events[0].to_json(), offset=1),
        record(b"{", offset=2),
        record(events[1].to_json(), offset=3),
        record(events[2].to_json(), offset=4),
    ]
    batch = decode_batch(records)
    assert batch.events == events
    assert [r.offset for r in batch.event_records] == [1, 3, 4]
    assert [r.offset for r, _ in batch.refused] == [2]


def _mutations(seed: int, count: int) -> list[bytes]:
    """Random byte-level edits of a valid event: most break it, some keep it valid in surprising ways."""
    rng = random.Random(seed)
    alphabet = b'{}[]":,.-+eE0123456789 \\ntrufalsNI\x00\xff'
    out = []
    for _ in range(count):
        data = bytearray(VALID)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[position] = rng.choice(alphabet)
            elif action < 0.7:
                del data[position]
            else:
                data.insert(position, rng.choice(alphabet))
        out.append(bytes(data))
    return out


EDGE_CASES = [
    VALID,
    with_field(latency_ms=5),  # an int where a float is expected
    with_field(latency_ms=-0.0),
    with_field(latency_ms=1e308),
    VALID.replace(b'"latency_ms":', b'"latency_ms":1e400,"x":'),
    VALID.replace(b'"latency_ms":', b'"latency_ms":Infinity,"x":'),
    with_field(label=None),
    VALID[:-1] + b',"latency_ms":1.5}',  # duplicate key: the last one wins in both parsers
    VALID.replace(b'"service":"', b'"service":"\\ud800'),  # a lone surrogate
    VALID.replace(b'"service":"', b'"service":"\xff'),  # invalid UTF-8
    b"\xef\xbb\xbf" + VALID,  # BOM
    VALID + b" \n",
    VALID + b"x",
    b"",
    b"null",
]


def _outcome(decode: Callable[[bytes], LogEvent], raw: bytes) -> LogEvent | str:
    try:
        return decode(raw)
    except BadEventError as exc:
        return exc.reason


@pytest.mark.parametrize("raw", EDGE_CASES)
def test_the_fast_decoder_agrees_with_parse_event_on_edge_cases(raw: bytes) -> None:
    assert _outcome(decode_event, raw) == _outcome(parse_event, raw)


def test_the_fast_decoder_agrees_with_parse_event_on_random_edits() -> None:
    samples = _mutations(seed=11, count=3000)
    outcomes = [(_outcome(decode_event, raw), _outcome(parse_event, raw)) for raw in samples]
    disagreements = [raw for raw, (fast, reference) in zip(samples, outcomes, strict=True) if fast != reference]
    assert disagreements == []
    still_valid = sum(1 for fast, _ in outcomes if isinstance(fast, LogEvent))
    assert still_valid >= 100, "the edits should leave some events valid, or acceptance is not being compared"


WHY = {
    "signal": "latency level",
    "observed": 1480.0,
    "expected": 221.5,
    "low": 190.25,
    "high": 260.0,
    "unit": "ms",
    "severity": 1.62,
    "basis": "service",
    "text": "latency 1,480 ms, usually 190–260 ms",
}


@pytest.mark.parametrize(
    "score",
    [
        Score(True, 0.93, "iforest-1"),
        Score(False, 0.0, "v"),
        Score(False, 1e-300, "ü"),
        Score(True, 7.0, "x"),
        Score(True, 14.6, "x", explanation=WHY, incident_id="inc-0123456789abcdef"),
    ],
)
def test_the_verdict_record_is_the_shared_verdict_schema(score: Score) -> None:
    for event in generate_normal_events(5, seed=2):
        fast = verdict_json(event, score)
        sent = {name: value for name, value in score._asdict().items() if name in VERDICT_FIELDS}  # not muted etc.
        reference = Verdict(**event.model_dump(), event_time=event.event_time, **sent)
        assert orjson.loads(fast) == orjson.loads(reference.to_json())
        assert Verdict.model_validate_json(fast) == reference


ORIGINAL = {"timestamp": 1_767_225_600.5, "service": "auth", "latency_ms": 187.3, "error_rate": 0.42}


def test_the_original_designs_event_is_scored_with_an_id_from_where_it_sits() -> None:
    batch = decode_batch([record(orjson.dumps(ORIGINAL), key=None, offset=12)])
    [event] = batch.events
    assert event.event_id == "logs:2:12" and event.event_time == 1_767_225_600.5
    verdict = orjson.loads(verdict_json(event, Score(False, 0.2, "m")))
    assert verdict == {**ORIGINAL, "event_id": "logs:2:12", "event_time": 1_767_225_600.5} | {
        "anomaly": False,
        "score": 0.2,
        "model_version": "m",
    }


@pytest.mark.parametrize(
    ("timestamp", "seconds"),
    [
        (1_767_225_600, 1_767_225_600.0),  # time.time(), as an int
        (1_767_225_600_123, 1_767_225_600.123),  # epoch milliseconds
        (1_767_225_600_123_456, 1_767_225_600.123456),  # microseconds
        ("2026-01-01T00:00:00Z", 1_767_225_600.0),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600.0),
        ("2026-01-01 00:00:00", 1_767_225_600.0),  # no zone: UTC
    ],
)
def test_each_timestamp_form_is_read_as_epoch_seconds_and_kept_as_sent(timestamp: object, seconds: float) -> None:
    [event] = decode_batch([record(orjson.dumps({**ORIGINAL, "timestamp": timestamp}))]).events
    assert event.event_time == pytest.approx(seconds, abs=1e-6)
    assert orjson.loads(verdict_json(event, Score(False, 0.1, "m")))["timestamp"] == timestamp


def test_an_event_without_a_time_takes_the_messages() -> None:
    no_time = {k: v for k, v in ORIGINAL.items() if k != "timestamp"}
    [event] = decode_batch([record(orjson.dumps(no_time))]).events
    assert event.event_time == 1_767_225_600.0
    assert "timestamp" not in orjson.loads(verdict_json(event, Score(False, 0.1, "m")))


def test_fields_a_producer_adds_are_carried_unchanged_into_the_verdict() -> None:
    extra = {"host": "web-7", "region": "eu-west-1", "trace_id": "4bf92f35", "status": 503, "tags": {"a": [1, None]}}
    [event] = decode_batch([record(orjson.dumps({**ORIGINAL, **extra, "event_id": "mine"}))]).events
    verdict = orjson.loads(verdict_json(event, Score(True, 12.5, "m")))
    assert {k: verdict[k] for k in extra} == extra
    assert verdict["event_id"] == "mine"  # a producer's own id is kept
    Verdict.model_validate(verdict)


def test_a_producers_explanation_or_incident_id_never_passes_for_the_processors() -> None:
    sent = {**ORIGINAL, "explanation": "trust me", "incident_id": "inc-forged"}
    [event] = decode_batch([record(orjson.dumps(sent))]).events
    plain = orjson.loads(verdict_json(event, Score(False, 0.1, "m")))
    assert "explanation" not in plain and "incident_id" not in plain
    explained = orjson.loads(verdict_json(event, Score(True, 14.6, "m", explanation=WHY, incident_id="inc-1")))
    assert explained["explanation"] == WHY and explained["incident_id"] == "inc-1"


def test_a_redelivered_message_gets_the_same_id_and_a_rekeyed_one_keeps_its_first_place() -> None:
    first = decode_event(orjson.dumps(ORIGINAL), EventOrigin("logs", 1, 99, 0.0))
    again = decode_event(orjson.dumps(ORIGINAL), EventOrigin("logs", 1, 99, 5.0))
    assert first.event_id == again.event_id == "logs:1:99"
    rekeyed = Record("logs.by-service", 0, 3, 0, b"auth", orjson.dumps(ORIGINAL), [("origin", b"logs:1:99")])
    [event] = decode_batch([rekeyed]).events
    assert event.event_id == "logs:1:99"
