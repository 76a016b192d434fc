"""The detector's state survives a crash, a rebalance and a flood of services (real broker, real processes).

The reference for "same verdict" is an uninterrupted ``ContextualScorer`` over the same ML service, fed the
same events in order: each service's state depends only on its own events, so batching does not matter.
"""
# ruff: noqa: F811 - the fixtures imported from test_processor_pipeline are parameters here

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from anomaly_processor.ml_client import HttpScorer
from kafka import KafkaConsumer, KafkaProducer

from eventbus import KafkaSettings, LogEvent, Verdict
from streaming_detector.profiles import generate_normal_events
from streaming_detector.scorer import ContextualScorer, Score
from tests.integration.test_processor_pipeline import (  # noqa: F401 - fixtures
    MLService,
    Processor,
    events_as_messages,
    ml_service,
    model_path,
    produce,
    start_processor,
    tally,
    topic_reader,
    verdicts_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

SERVICES = ("auth", "payment", "orders")


def traffic(count_per_service: int, seed: int, services: Sequence[str] = SERVICES) -> list[LogEvent]:
    """Healthy traffic of ``services``, interleaved, with unique event ids per seed."""
    events = generate_normal_events(count_per_service * len(services), services=list(services), seed=seed)
    return [e.model_copy(update={"event_id": f"{seed}-{i}"}) for i, e in enumerate(events)]


def spike(event: LogEvent, name: str) -> LogEvent:
    return event.model_copy(update={"event_id": name, "latency_ms": event.latency_ms * 8, "error_rate": 0.9})


def reference(ml_service: MLService, events: Sequence[LogEvent]) -> dict[str, Score]:
    """Every event's verdict from one uninterrupted scorer, as the processor scores (no cool-down: incidents)."""
    scorer = ContextualScorer(HttpScorer(ml_service.url), cooldown=False)
    verdicts: dict[str, Score] = {}
    for start in range(0, len(events), 500):
        batch = events[start : start + 500]
        for event, score in zip(batch, scorer.score(batch), strict=True):
            verdicts[event.event_id] = score  # type: ignore[index]
    scorer.close()
    return verdicts


def assert_as_uninterrupted(verdicts: list[Verdict], expected: dict[str, Score]) -> None:
    """Every verdict (first run's and redone ones alike) is the uninterrupted run's, to 1e-9."""
    different = [
        (v.event_id, v.anomaly, v.score, expected[v.event_id])
        for v in verdicts
        if v.anomaly != expected[v.event_id].anomaly or abs(v.score - expected[v.event_id].score) > 1e-9
    ]
    assert not different, f"{len(different)} of {len(verdicts)} verdicts differ, e.g. {different[:5]}"


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_processor_killed_mid_stream_resumes_every_service_as_if_never_stopped(
    kafka_settings: KafkaSettings,
    ml_service: MLService,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    before = traffic(400, seed=61)
    after = traffic(50, seed=62)  # 50 events of each service after the restart, then a spike
    injected = spike(after[-2], "spike-after-restart")
    tail = traffic(10, seed=63)
    events = [*before, *after, injected, *tail]
    expected = reference(ml_service, events)
    assert expected["spike-after-restart"].anomaly, "the uninterrupted run flags the spike"

    producer = producer_factory()
    produce(producer, kafka_settings.logs_topic, events_as_messages(before))
    options = {"BATCH_MAX": "50", "STATE_COMMIT_INTERVAL_MS": "300"}
    first = start_processor(**options)
    first.wait_for_output(lambda out: out.count("\n") >= 600)
    first.stop(signal.SIGKILL)
    printed = len(first.printed_event_ids())
    assert 0 < printed < len(before), "the kill should land mid-stream"

    second = start_processor(**options)
    produce(producer, kafka_settings.logs_topic, events_as_messages([*after, injected, *tail]))
    verdicts, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), set(expected))
    assert second.stop() == 0, second.diagnostics()

    lost, duplicates = tally(f"SIGKILL after {printed} printed, restart", len(events), counts, set(expected))
    assert lost == 0
    assert_as_uninterrupted(verdicts, expected)
    assert any(v.event_id == "spike-after-restart" and v.anomaly for v in verdicts)
    restored = re.search(
        r"restored partitions \[[\d, ]+\]: (\d+) state records of (\d+) services", second.stderr_path.read_text()
    )
    assert restored and int(restored.group(1)) > 0, second.diagnostics()
    # However often a service was saved, it is one service restored (what `make status` reports).
    assert 0 < int(restored.group(2)) <= min(int(restored.group(1)), len({e.service for e in before}))


def test_services_moving_to_another_processor_keep_their_history(
    kafka_settings: KafkaSettings,
    ml_service: MLService,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    services = [f"svc-{i}" for i in range(9)]  # spread over the 3 partitions
    events = traffic(250, seed=71, services=services)
    expected = reference(ml_service, events)
    producer = producer_factory()

    def paced() -> None:  # ~9 s of traffic, so the rebalance lands mid-stream
        for start in range(0, len(events), 75):
            produce(producer, kafka_settings.logs_topic, events_as_messages(events[start : start + 75]))
            time.sleep(0.25)

    options = {"BATCH_MAX": "100", "STATE_COMMIT_INTERVAL_MS": "200", "PRINT_MODE": "quiet"}
    processors = [start_processor(**options) for _ in range(3)]
    for processor in processors:
        wait_for(lambda p=processor: "partitions assigned" in p.stderr_path.read_text(), 90, "an assignment")
    sender = threading.Thread(target=paced, daemon=True)
    sender.start()
    time.sleep(3)
    leaving = processors[0]
    assert leaving.stop() == 0, leaving.diagnostics()  # its partition moves to one of the two others
    sender.join(60)

    verdicts, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), set(expected))
    for processor in processors[1:]:
        assert processor.stop() == 0, processor.diagnostics()
    lost, duplicates = tally("three processors, one leaves", len(events), counts, set(expected))
    assert lost == 0
    assert_as_uninterrupted(verdicts, expected)
    logs = "".join(p.stderr_path.read_text() for p in processors[1:])
    moved = [int(n) for n in re.findall(r"restored partitions \[[\d, ]+\]: (\d+) state records", logs)]
    assert any(n > 0 for n in moved), "a moved partition's state should have been restored"


FLOOD_SERVICES = int(os.environ.get("FLOOD_SERVICES", "3000"))  # `make flood` runs 100,000
FLOOD_MAX_SERVICES = 100
# The processor's peak RSS: ~150 MiB of interpreter, libraries and numba, ~350 KiB per service in memory, and
# the batch in hand. Measured 258 / 317 / 275 MiB with 1,000 / 3,000 / 6,000 flooding names (the middle one in
# a full CI run): it does not grow with the names, but varies by run.
FLOOD_RSS_BOUND_MIB = 400


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def test_a_flood_of_service_names_neither_exhausts_memory_nor_loses_an_event(
    kafka_settings: KafkaSettings,
    ml_service: MLService,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    real = traffic(300, seed=81, services=[f"real-{i}" for i in range(10)])
    real = [*real[:-20], spike(real[-20], "spike-real"), *real[-20:]]
    expected = reference(ml_service, real)
    assert expected["spike-real"].anomaly
    flood = [
        e.model_copy(update={"event_id": f"flood-{i}", "service": f"pod-{i // 2}"})
        for i, e in enumerate(traffic(FLOOD_SERVICES * 2 // 3 + 1, seed=82))
    ][: FLOOD_SERVICES * 2]
    step = max(1, len(flood) // len(real))
    events: list[LogEvent] = []
    for i, event in enumerate(real):
        events.extend(flood[i * step : (i + 1) * step])
        events.append(event)
    events.extend(flood[len(real) * step :])
    produce(producer_factory(), kafka_settings.logs_topic, events_as_messages(events))

    processor = start_processor(
        PRINT_MODE="quiet", STATE_MAX_SERVICES=str(FLOOD_MAX_SERVICES), STATE_COMMIT_INTERVAL_MS="500"
    )
    ids = {e.event_id for e in events}
    verdicts, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), ids, timeout_s=600)
    rss = peak_rss_mib(processor.process.pid)
    assert processor.stop() == 0, processor.diagnostics()
    lost, _ = tally(f"{FLOOD_SERVICES} flooding services, cap {FLOOD_MAX_SERVICES}", len(events), counts, ids)
    print(f"[flood] processor peak RSS {rss:.0f} MiB (bound {FLOOD_RSS_BOUND_MIB} MiB)")
    assert lost == 0
    assert rss < FLOOD_RSS_BOUND_MIB
    assert_as_uninterrupted([v for v in verdicts if v.event_id in expected], expected)


def test_the_changelog_is_compacted_and_has_a_partition_per_partition_of_logs(kafka_settings: KafkaSettings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType

    from eventbus import make_admin

    admin = make_admin(kafka_settings)
    try:
        topics = [kafka_settings.state_topic, kafka_settings.logs_topic]
        deadline = time.monotonic() + 10
        while True:  # a topic just created can be described before its partitions reach the metadata
            described = {t.get("topic", t.get("name")): len(t["partitions"]) for t in admin.describe_topics(topics)}
            if 0 not in described.values() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert described == {kafka_settings.state_topic: 3, kafka_settings.logs_topic: 3}
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, kafka_settings.state_topic)])
        policy = answer["topic"][kafka_settings.state_topic]["cleanup.policy"]
        assert "compact" in repr(policy), answer
    finally:
        admin.close()
