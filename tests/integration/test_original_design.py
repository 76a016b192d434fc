"""Conformance with the original design: its simulator's events and its processor's loop, against the real
broker, the real ML service and the real processor.

The original simulator sends ``{"timestamp": time.time(), "service", "latency_ms", "error_rate"}`` with no key
and no id; its processor is a plain ``KafkaConsumer('logs')`` with no group that posts each event, as it is,
to ``/predict`` and reads ``response.json()['anomaly']``. Each test prints a tally:
sent / verdicts / dead-lettered / errors.
"""

import json
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator

import orjson
import pytest
import requests
from kafka import KafkaConsumer, KafkaProducer

from eventbus import KafkaSettings, Verdict
from streaming_detector.profiles import generate_normal_events
from tests.integration.test_processor_pipeline import (  # noqa: F401  (fixtures)
    MLService,
    Processor,
    ml_service,
    model_path,
    read_until,
    start_processor,
    topic_reader,
    wait_for_members,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

EXTRA_FIELDS = {"host": "web-7", "region": "eu-west-1", "trace_id": "4bf92f3577b34da6", "status": 200, "endpoint": "/"}


def original_simulator(bootstrap: str, topic: str, count: int, seed: int, extra_share: float = 0.0) -> list[dict]:
    """The original design's simulator loop as written, without its one-second sleep; some events carry the
    fields real producers add. Returns what it sent."""
    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, value_serializer=lambda v: json.dumps(v).encode("utf-8"))
    sent = []
    try:
        for _ in range(count):
            log = {
                "timestamp": time.time(),
                "service": rng.choice(["auth", "payment", "orders"]),
                "latency_ms": rng.gauss(200, 50),
                "error_rate": rng.random(),
            }
            if log["latency_ms"] < 0:
                continue  # the original can draw a negative latency (p ~ 3e-5): refused by design, not sent here
            if rng.random() < extra_share:
                log.update(EXTRA_FIELDS)
            producer.send(topic, log)
            sent.append(log)
        producer.flush(30)
    finally:
        producer.close(5)
    return sent


def original_processor(bootstrap: str, topic: str, url: str, expected: int) -> tuple[list[str], Counter[int]]:
    """The original design's processor loop, as written (``consumer_timeout_ms`` added so that it ends)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        value_deserializer=lambda m: json.loads(m.decode("utf-8")),
    )
    printed: list[str] = []
    statuses: Counter[int] = Counter()
    try:
        for message in consumer:
            log = message.value
            response = requests.post(f"{url}/predict", json=log, timeout=10)
            statuses[response.status_code] += 1
            printed.append(f"Log: {log}, Anomaly: {response.json()['anomaly']}")
            if len(printed) >= expected:
                break
    finally:
        consumer.close()
    return printed, statuses


def verdicts_by_id(reader: KafkaConsumer, count: int, timeout_s: float = 90) -> list[Verdict]:
    records = read_until(reader, lambda got: len({orjson.loads(r.value)["event_id"] for r in got}) >= count, timeout_s)
    return [Verdict.model_validate_json(r.value) for r in records]


@pytest.fixture
def sent_original(kafka_settings: KafkaSettings) -> Iterator[Callable[..., list[dict]]]:
    def send(count: int, seed: int, extra_share: float = 0.0) -> list[dict]:
        return original_simulator(
            kafka_settings.kafka_bootstrap_servers, kafka_settings.logs_topic, count, seed, extra_share
        )

    yield send


def test_the_original_simulators_events_each_get_one_verdict_carrying_what_was_sent(
    kafka_settings: KafkaSettings,
    sent_original: Callable[..., list[dict]],
    topic_reader: Callable[[str], KafkaConsumer],  # noqa: F811
    start_processor: Callable[..., Processor],  # noqa: F811
) -> None:
    sent = sent_original(600, seed=1, extra_share=0.3)
    processor = start_processor(BATCH_MAX="200")

    verdicts = verdicts_by_id(topic_reader(kafka_settings.predictions_topic), len(sent))
    dead = read_until(topic_reader(kafka_settings.dlq_topic), lambda got: False, timeout_s=2, settle_s=0)
    assert processor.stop() == 0, processor.diagnostics()

    counts = Counter(v.event_id for v in verdicts)
    print(
        f"\n[tally] original simulator -> processor: sent={len(sent)} verdicts={len(verdicts)} "
        f"dead-lettered={len(dead)} errors={sum(n - 1 for n in counts.values())} (duplicate verdicts)"
    )
    assert len(dead) == 0
    assert len(counts) == len(sent) and max(counts.values()) == 1
    # Derived ids say where each message sits; every field sent is in its verdict, as sent.
    assert all(v.event_id.startswith(f"{kafka_settings.logs_topic}:") for v in verdicts)
    as_sent = {(log["timestamp"], log["service"]): log for log in sent}
    for verdict in verdicts:
        log = as_sent[(verdict.timestamp, verdict.service)]
        dumped = verdict.model_dump(exclude_unset=True)
        assert {key: dumped[key] for key in log} == log
        assert verdict.event_time == pytest.approx(log["timestamp"])
    with_extras = [v for v in verdicts if v.model_extra and "trace_id" in v.model_extra]
    assert len(with_extras) > 100
    # The processor's line shows the event as received, like the original's ``Log: {log}, Anomaly: ...``.
    first = sent[0]
    assert f'Log: {{"timestamp":{first["timestamp"]},"service":"{first["service"]}"' in processor.stdout()


def two_in_the_group(
    start_processor: Callable[..., Processor],  # noqa: F811
    kafka_settings: KafkaSettings,
    **options: str,
) -> tuple[Processor, Processor]:
    """Two processors sharing the partitions before the events arrive (either may join first on a loaded
    machine), so that keyless events meet partitions owned by the other processor."""
    first = start_processor(**options)
    second = start_processor(**options)
    wait_for_members(kafka_settings, start_processor.group, 2, timeout_s=90)  # type: ignore[attr-defined]
    time.sleep(1)
    return first, second


def test_keyless_events_are_scored_in_their_services_context_by_one_of_two_processors(
    ml_service: MLService,  # noqa: F811
    kafka_settings: KafkaSettings,
    sent_original: Callable[..., list[dict]],
    topic_reader: Callable[[str], KafkaConsumer],  # noqa: F811
    start_processor: Callable[..., Processor],  # noqa: F811
) -> None:
    first, second = two_in_the_group(start_processor, kafka_settings, BATCH_MAX="100", PRINT_MODE="events")
    normal = sent_original(900, seed=2)
    spike = {"timestamp": time.time(), "service": "payment", "latency_ms": 4000.0, "error_rate": 0.5}
    producer = KafkaProducer(
        bootstrap_servers=kafka_settings.kafka_bootstrap_servers, value_serializer=lambda v: json.dumps(v).encode()
    )
    producer.send(kafka_settings.logs_topic, spike)
    producer.flush(10)
    producer.close(5)

    verdicts = verdicts_by_id(topic_reader(kafka_settings.predictions_topic), len(normal) + 1)
    assert first.stop() == 0 and second.stop() == 0

    counts = Counter(v.event_id for v in verdicts)
    print(
        f"\n[tally] keyless events, two processors: sent={len(normal) + 1} verdicts={len(verdicts)} "
        f"dead-lettered=0 errors={sum(n - 1 for n in counts.values())} (duplicate verdicts)"
    )
    assert len(counts) == len(normal) + 1
    # Every service was scored by one processor only: its state lives in one place.
    printed_by: dict[str, set[int]] = defaultdict(set)
    for index, processor in enumerate((first, second)):
        for line in processor.stdout().splitlines():
            if "Log: " in line:
                printed_by[orjson.loads(line.split("Log: ", 1)[1].rsplit(", Anomaly: ", 1)[0])["service"]].add(index)
    assert set(printed_by) == {"auth", "payment", "orders"}
    assert all(len(owners) == 1 for owners in printed_by.values()), printed_by
    # Scored in context: the spike is far above the context model's threshold; the original's N(200, 50) and
    # U[0, 1] are its normal.
    threshold = requests.get(f"{ml_service.url}/model", timeout=10).json()["context"]["threshold"]
    [spiked] = [v for v in verdicts if v.latency_ms == 4000.0]
    assert spiked.score > threshold
    # The last 300 events sent (not read: the topic's partitions come back in any order), each service warm by then.
    late = sorted((v for v in verdicts if v.latency_ms != 4000.0), key=lambda v: v.timestamp)[-300:]
    assert sum(v.score > threshold for v in late) <= 3, [v for v in late if v.score > threshold]


def test_keyless_events_lose_nothing_when_a_processor_forwarding_them_is_killed(
    ml_service: MLService,  # noqa: F811
    kafka_settings: KafkaSettings,
    sent_original: Callable[..., list[dict]],
    topic_reader: Callable[[str], KafkaConsumer],  # noqa: F811
    start_processor: Callable[..., Processor],  # noqa: F811
) -> None:
    # Each processor forwards the keyless events of services the other owns: a kill lands with forwarded
    # batches in flight both ways. Committed after every batch, so the duplicates are bounded below.
    first, second = two_in_the_group(
        start_processor, kafka_settings, BATCH_MAX="50", STATE_COMMIT_INTERVAL_MS="0", PRINT_MODE="events"
    )
    sent = sent_original(3000, seed=6)

    def lines(processor: Processor) -> int:
        return sum("Log: " in line for line in processor.stdout().splitlines())

    first.wait_for_output(lambda out: out.count("Log: ") >= 300)
    first.stop(signal.SIGKILL)
    printed_before_kill = lines(first) + lines(second)
    assert printed_before_kill < len(sent), "the kill should land mid-stream"

    verdicts = verdicts_by_id(topic_reader(kafka_settings.predictions_topic), len(sent))
    assert second.stop() == 0, second.diagnostics()

    counts = Counter(v.event_id for v in verdicts)
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"\n[tally] keyless events, one of two processors killed after {printed_before_kill} lines: "
        f"sent={len(sent)} verdicts={len(verdicts)} dead-lettered=0 errors={duplicates} (duplicate verdicts)"
    )
    # Every event sent got a verdict carrying what was sent, whichever processor first read or forwarded it.
    assert {(v.event_time, v.latency_ms) for v in verdicts} == {(e["timestamp"], e["latency_ms"]) for e in sent}
    assert len(counts) == len(sent)
    # At-least-once: what the killed processor had read or been forwarded but not committed is redone: a few
    # batches' worth, not the stream.
    assert duplicates <= 10 * 50, duplicates


def test_the_original_processor_loop_runs_against_the_projects_stream_and_service(
    kafka_settings: KafkaSettings,
    sent_original: Callable[..., list[dict]],
    producer_factory: Callable[..., KafkaProducer],
    ml_service: MLService,  # noqa: F811
) -> None:
    project = generate_normal_events(150, seed=3)
    producer = producer_factory()
    for event in project:
        producer.send(kafka_settings.logs_topic, key=event.key(), value=event.to_json())
    producer.flush(30)
    sent = sent_original(150, seed=4, extra_share=0.5)

    printed, statuses = original_processor(
        kafka_settings.kafka_bootstrap_servers, kafka_settings.logs_topic, ml_service.url, len(project) + len(sent)
    )

    print(
        f"\n[tally] original processor -> /predict: sent={len(project) + len(sent)} verdicts={statuses[200]} "
        f"dead-lettered=0 errors={sum(n for status, n in statuses.items() if status != 200)}"
    )
    assert statuses == Counter({200: len(project) + len(sent)})
    assert len(printed) == len(project) + len(sent)
    assert all(line.endswith(("Anomaly: True", "Anomaly: False")) for line in printed)
