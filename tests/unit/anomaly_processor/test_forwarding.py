"""The repartition topic's forwarded batches: what goes in comes out, and what does not follow the format is refused."""

import struct

import orjson
import pytest
from anomaly_processor import forwarding
from anomaly_processor.forwarding import ForwardedRecord, ForwardFormatError
from anomaly_processor.records import DeadLetter, dead_letter_json, decode_batch

from tests.unit.anomaly_processor.consumed import Record

ORIGINAL = {"timestamp": 1_767_225_600.25, "service": "auth", "latency_ms": 212.5, "error_rate": 0.125}


def consumed(partition: int, offset: int, value: bytes, timestamp: int = 1_767_225_600_000) -> Record:
    return Record("logs", partition, offset, timestamp, None, value)


def batch_record(value: bytes, offset: int = 5) -> Record:
    return Record("logs.by-service", 1, offset, 0, None, value)


def test_a_batch_round_trips_every_event_with_where_it_first_sat() -> None:
    records = [
        consumed(0, 40, orjson.dumps(ORIGINAL)),
        consumed(2, 7, b'{"service": "auth", "odd": "\\u00e9 bytes kept as sent"}', timestamp=-1),
        consumed(1, 2**40, b""),
    ]
    [packed] = forwarding.pack(records)
    assert forwarding.forwarded_count(packed) == 3 and forwarding.is_forwarded(packed)
    unpacked = forwarding.unpack(packed)
    assert unpacked.topic == "logs"
    assert unpacked.partitions == (0, 2, 1) and unpacked.offsets == (40, 7, 2**40)
    assert unpacked.timestamps == (1_767_225_600_000, -1, 1_767_225_600_000)
    assert unpacked.values == [r.value for r in records]  # the bytes as the producer sent them


def test_a_batch_over_the_record_limit_is_split_in_order() -> None:
    big = orjson.dumps({**ORIGINAL, "pad": "x" * 60_000})
    records = [consumed(0, offset, big) for offset in range(20)]
    packed = list(forwarding.pack(records))
    assert len(packed) > 1 and all(len(value) <= forwarding.RECORD_MAX_BYTES for value in packed)
    offsets = [offset for value in packed for offset in forwarding.unpack(value).offsets]
    assert offsets == list(range(20))


def test_json_is_never_taken_for_a_forwarded_batch() -> None:
    assert not forwarding.is_forwarded(orjson.dumps(ORIGINAL))
    assert not any(forwarding.is_forwarded(value) for value in (b" {}", b"", None))
    assert forwarding.forwarded_count(orjson.dumps(ORIGINAL)) == 1


[GOOD] = forwarding.pack([consumed(0, 1, orjson.dumps(ORIGINAL)), consumed(0, 2, orjson.dumps(ORIGINAL))])
HEAD = struct.Struct("<BBIH")
REFUSED = {
    "too short": (GOOD[:3], "too short"),
    "unknown version": (bytes([0, 9]) + GOOD[2:], "version 9"),
    "truncated": (GOOD[:-1], "lengths add up"),
    "trailing bytes": (GOOD + b"x", "lengths add up"),
    "more events than bytes": (HEAD.pack(0, 1, 10**6, 4) + b"logs", "too short for 1000000 events"),
    "no events": (HEAD.pack(0, 1, 0, 4) + b"logs", "no events"),
    "topic not UTF-8": (HEAD.pack(0, 1, 1, 2) + b"\xff\xfe" + GOOD[HEAD.size + 4 :], "not UTF-8"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_record_not_in_the_format_is_refused_saying_why(name: str) -> None:
    value, reason = REFUSED[name]
    with pytest.raises(ForwardFormatError, match=reason):
        forwarding.unpack(value)


def test_a_refused_batch_is_dead_lettered_whole_and_the_records_around_it_decoded() -> None:
    broken = batch_record(GOOD[:-1], offset=5)
    fine = batch_record(GOOD, offset=6)
    batch = decode_batch([broken, fine], lambda key: True, "logs.by-service")
    assert [(record.offset, "lengths add up" in reason) for record, reason in batch.refused] == [(5, True)]
    assert [event.event_id for event in batch.events] == ["logs:0:1", "logs:0:2"]


def test_forwarded_events_are_scored_with_the_id_and_time_of_their_first_place() -> None:
    no_time = {key: value for key, value in ORIGINAL.items() if key != "timestamp"}
    [packed] = forwarding.pack([consumed(2, 40, orjson.dumps(ORIGINAL)), consumed(0, 9, orjson.dumps(no_time), 5000)])
    batch = decode_batch([batch_record(packed)], lambda key: False, "logs.by-service")
    assert batch.forward == [] and batch.refused == []  # a forwarded event is never forwarded again
    assert [e.event_id for e in batch.events] == ["logs:2:40", "logs:0:9"]
    assert [e.event_time for e in batch.events] == [ORIGINAL["timestamp"], 5.0]
    assert batch.events[0].as_sent() == ORIGINAL
    # Committed, rewound and lost to a rebalance as the batch record they came in.
    assert {(r.topic, r.partition, r.offset) for r in batch.event_records} == {("logs.by-service", 1, 5)}


def test_an_invalid_forwarded_event_is_dead_lettered_where_it_first_sat() -> None:
    bad = orjson.dumps({**ORIGINAL, "latency_ms": -1.0})
    [packed] = forwarding.pack([consumed(0, 3, orjson.dumps(ORIGINAL)), consumed(2, 8, bad)])
    batch = decode_batch([batch_record(packed)], lambda key: True, "logs.by-service")
    assert len(batch.events) == 1
    [(record, reason)] = batch.refused
    assert isinstance(record, ForwardedRecord) and "latency_ms" in reason
    letter = DeadLetter.model_validate_json(dead_letter_json(record, reason))
    assert (letter.topic, letter.partition, letter.offset) == ("logs", 2, 8)
    assert letter.value_preview == bad.decode()


def test_keyless_events_of_services_owned_elsewhere_are_forwarded_unvalidated_with_their_service_key() -> None:
    bad = orjson.dumps({**ORIGINAL, "service": "orders", "latency_ms": "fast"})
    records = [consumed(0, 1, orjson.dumps(ORIGINAL)), consumed(0, 2, bad), consumed(0, 3, b"not json")]
    keyed_bad = Record("logs", 0, 4, 0, b"mine", bad)
    batch = decode_batch([*records, keyed_bad], lambda key: key == b"payment", "logs.by-service")
    # Its owner validates it (and dead-letters it): validating it twice is what forwarding must not cost.
    assert [(record.offset, key) for record, key in batch.forward] == [(1, b"auth"), (2, b"orders")]
    # A keyed one is refused here, where its dead letter keeps its key.
    assert [record.offset for record, _ in batch.refused] == [3, 4]
