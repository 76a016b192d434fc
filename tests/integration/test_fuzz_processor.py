"""Bad messages fed to the real processor: each one dead-lettered with its reason, every valid event scored.

Hand-written kinds (non-JSON, binary, truncated, huge, NaN/inf, wrong types, missing fields...), odd but
valid events (extreme numbers, Unicode, a service never seen before) and a few hundred seeded random
mutations of valid events, all interleaved in one stream. The oracle for a mutation is the shared schema
(``eventbus.parse_event``): what it accepts must be scored, what it refuses must be dead-lettered with
that reason.
"""

import json
import random
import time
from pathlib import Path

import orjson
import pytest

from devstack.harness import (
    Collector,
    MLServiceProcess,
    ProcessorProcess,
    bad_messages,
    kafka_env,
    produce_now,
    tally_ids,
    train_model,
)
from eventbus import BadEventError, KafkaSettings, parse_event
from streaming_detector.profiles import generate_normal_events

pytestmark = pytest.mark.integration

MUTATIONS = 600
# Past its warm-up and long enough for its own history to speak (160 values, one an event): before
# that, a perfectly ordinary event of a young service can score exactly 0 nats.
NEW_SERVICE_EVENTS = 200


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """One random edit of a serialized event: the kinds of damage a broken producer or a bit flip does."""
    kind = rng.randrange(7)
    if kind == 0:  # truncated
        return raw[: rng.randrange(len(raw))]
    if kind == 1:  # one byte changed
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :]
    if kind == 2:  # a chunk of random bytes inserted
        i = rng.randrange(len(raw))
        return raw[:i] + rng.randbytes(rng.randrange(1, 8)) + raw[i:]
    data = orjson.loads(raw)
    field = rng.choice(sorted(data))
    if kind == 3:  # a field dropped
        del data[field]
    elif kind == 4:  # a field given a value of another type or out of range
        data[field] = rng.choice([None, True, "x", "", -1, 1e300, 2, [], {}, "1e3", 10**30, -0.0, 0])
    elif kind == 5:  # an extra field
        data[rng.choice(["extra", "LATENCY_MS", "score", "anomaly"])] = 1
    else:  # a value written with JSON number syntax Python's json would not produce
        text = dumps(data).decode()
        return text.replace('"latency_ms":', rng.choice(['"latency_ms":1E2,"x":', '"latency_ms":-0,"y":'])).encode()
    return dumps(data)


def dumps(data: object) -> bytes:
    """JSON as any producer might write it (stdlib: integers of any size, raw UTF-8)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def test_every_bad_message_is_dead_lettered_with_its_reason_and_every_valid_event_scored(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    started = time.monotonic()
    rng = random.Random(20260101)
    normal = generate_normal_events(600, seed=31)
    newcomer = generate_normal_events(NEW_SERVICE_EVENTS, services=["never-seen-before"], seed=32)
    template = orjson.loads(normal[0].to_json())
    odd_but_valid = [
        {**template, "event_id": "odd-max-float", "latency_ms": 1.7976931348623157e308, "error_rate": 1},
        {**template, "event_id": "odd-subnormal", "latency_ms": 5e-324, "error_rate": 5e-324},
        {**template, "event_id": "odd-zero", "latency_ms": 0, "error_rate": 0},
        {**template, "event_id": "odd-huge-int", "latency_ms": 10**30},
        {**template, "event_id": "odd-unicode", "service": "paiement-€-支付-🙂"},
        {**template, "event_id": "odd-long-service", "service": "s" * 200},
        {**template, "event_id": "odd-nul", "service": "a\u0000b"},
        {**template, "event_id": "o" * 200},
    ]

    # (key, value) messages; expected outcome per id: a verdict for valid events, a dead letter (by key) for bad.
    messages: list[tuple[bytes | None, bytes | None]] = []
    valid_ids: set[str] = set()
    reasons: dict[str, str] = {}  # bad message id -> the reason the shared schema gives
    words: dict[str, str] = {}  # bad message id -> a word its reason must hold
    for event in normal:
        messages.append((event.key(), event.to_json()))
        valid_ids.add(event.event_id)
    for data in odd_but_valid:
        event = parse_event(dumps(data))
        messages.insert(rng.randrange(len(messages)), (event.key(), dumps(data)))
        valid_ids.add(event.event_id)
    for bad_id, value, word in bad_messages("bad"):
        messages.insert(rng.randrange(len(messages)), (bad_id.encode(), value))
        words[bad_id] = word
        reasons[bad_id] = expected_reason(value)
    for n in range(MUTATIONS):
        base = normal[rng.randrange(len(normal))].to_json()
        value = mutate(base, rng)
        try:
            event = parse_event(value)
        except BadEventError as exc:
            key = f"mutation-{n}"
            reasons[key] = exc.reason
            messages.insert(rng.randrange(len(messages)), (key.encode(), value))
            continue
        if event.event_id is None:
            continue  # valid without an id, so scored under one derived from its offset: not trackable here
        if event.event_id not in valid_ids:  # a mutation that kept the event valid: it must be scored
            valid_ids.add(event.event_id)
            messages.insert(rng.randrange(len(messages)), (event.key(), value))
    messages.extend((e.key(), e.to_json()) for e in newcomer)  # a new service, after all the damage
    valid_ids |= {e.event_id for e in newcomer}
    produce_now(kafka_settings, messages)

    ml = MLServiceProcess(train_model(tmp_path), tmp_path)
    processor = ProcessorProcess(
        kafka_env(kafka_settings), tmp_path, group="fuzz", scorer_url=ml.url, name="processor", BATCH_MAX="100"
    )
    collector = Collector(kafka_settings)
    try:
        ml.start()
        collector.start()
        processor.start()
        missing = collector.wait_for(valid_ids | set(reasons), timeout_s=90)
        assert processor.terminate() == 0, processor.log_tail()
    finally:
        processor.cleanup()
        ml.cleanup()
        collector.stop()

    tally = tally_ids(
        "processor fed bad input (hand-written + mutations)",
        valid_ids,
        set(reasons),
        collector,
        started,
        hand_written_bad=len(words),
        mutations_bad=len(reasons) - len(words),
        mutations_valid=len(valid_ids) - len(normal) - len(odd_but_valid) - NEW_SERVICE_EVENTS,
    )
    assert not missing, f"{len(missing)} without an outcome, e.g. {sorted(missing)[:5]}\n{processor.log_tail()}"
    assert (tally.lost, tally.misrouted, tally.duplicates) == (0, 0, 0), processor.log_tail()
    for bad_id, reason in reasons.items():
        assert collector.reasons[bad_id] == reason, bad_id
    for bad_id, word in words.items():
        assert word in collector.reasons[bad_id], (bad_id, collector.reasons[bad_id])
    # A service never seen before is not bad input: scored, and with real scores once past any warm-up.
    newcomer_scores = [s for _, event_id, service, s in collector.verdict_log if service == "never-seen-before"]
    assert len(newcomer_scores) == NEW_SERVICE_EVENTS
    assert all(score != 0.0 for score in newcomer_scores[-20:]), newcomer_scores


def expected_reason(value: bytes | None) -> str:
    try:
        parse_event(value)
    except BadEventError as exc:
        return exc.reason
    raise AssertionError(f"meant to be bad, but the schema accepts it: {value!r:.100}")
