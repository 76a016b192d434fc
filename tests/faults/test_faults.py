"""The pipeline under faults, with real processes and a real broker: nothing produced may go missing.

Each test produces events with unique ids at a steady rate (with a bad message now and then), breaks
something mid-stream, and checks by id that every event has a verdict in ``predictions`` or a dead
letter in ``logs.dlq``. Each prints its tally and records it in ``bench-results/faults.json``.
"""

import sys
import time
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2
from local_kafka import LocalBroker, LocalBrokerConfig

from devstack.harness import (
    REPO_ROOT,
    SIMULATOR_SUMMARY,
    Child,
    Collector,
    FaultyProxy,
    SteadyProducer,
    kafka_env,
    make_tally,
    read_event_ids,
    tally_ids,
    wait_progress,
)
from tests.conftest import free_port, fresh_topics
from tests.faults.conftest import Rig

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.both_clients]

RATE = 300  # events/s: enough for every fault to land mid-stream, light enough for 2 shared cores
BAD_EVERY = 97  # one message in 97 is bad: dead letters are owed under faults too
BATCH_MAX = 200
# Offsets (and state) committed after every batch, as the duplicate bounds below assume (the default commits
# at most every second: a kill then redoes up to a second of traffic).
PER_BATCH = {"BATCH_MAX": str(BATCH_MAX), "STATE_COMMIT_INTERVAL_MS": "0"}
SERVICES = ("auth", "payment", "orders", "search", "cart", "email", "billing", "gateway", "inventory")


def finish(rig: Rig, producer: SteadyProducer, collector: Collector, timeout_s: float = 120) -> None:
    """Stop producing, then wait until every acknowledged message has an outcome (or time runs out)."""
    producer.stop()
    missing = collector.wait_for(producer.produced, timeout_s)
    if missing:
        print(f"still missing after {timeout_s}s: {len(missing)}, e.g. {sorted(missing)[:5]}\n{rig.diagnostics()}")


def assert_nothing_lost(tally_lost: int, misrouted: int, producer: SteadyProducer, rig: Rig) -> None:
    assert not producer.failed, f"Kafka refused {len(producer.failed)} sends: {list(producer.failed.values())[:3]}"
    assert tally_lost == 0, rig.diagnostics()
    assert misrouted == 0


def test_processor_sigkilled_three_times_mid_stream(rig: Rig) -> None:
    started = time.monotonic()
    ml = rig.ml_service()
    collector = rig.collector()
    producer = rig.producer(rate=RATE, bad_every=BAD_EVERY, services=SERVICES)
    processor = rig.processor(ml.url, **PER_BATCH)
    kills = 3
    for _ in range(kills):
        wait_progress(collector, 400)
        processor.kill()
        processor = rig.processor(ml.url, **PER_BATCH)
    wait_progress(collector, 400)
    finish(rig, producer, collector)
    assert processor.terminate() == 0, rig.diagnostics()

    tally = make_tally("processor SIGKILLed x3, restarted", producer, collector, started, kills=kills)
    assert_nothing_lost(tally.lost, tally.misrouted, producer, rig)
    # At-least-once: a kill redoes at most the batch in hand and the one before it, whose commit may have been
    # unconfirmed.
    assert tally.duplicates <= kills * 2 * BATCH_MAX


def test_ml_service_killed_twice_and_restarted(rig: Rig) -> None:
    started = time.monotonic()
    ml = rig.ml_service()
    collector = rig.collector()
    producer = rig.producer(rate=RATE, bad_every=BAD_EVERY, services=SERVICES)
    processor = rig.processor(ml.url, BATCH_MAX=str(BATCH_MAX))
    for _ in range(2):
        wait_progress(collector, 400)
        ml.kill()
        before = collector.total_verdicts()
        time.sleep(3)  # events keep arriving while nothing can score them
        assert processor.alive(), rig.diagnostics()
        stalled = collector.total_verdicts() - before
        ml.start()
    wait_progress(collector, 400)
    finish(rig, producer, collector)
    assert processor.terminate() == 0, rig.diagnostics()

    tally = make_tally("ML service SIGKILLed x2, restarted", producer, collector, started, kills=2)
    assert_nothing_lost(tally.lost, tally.misrouted, producer, rig)
    assert stalled <= BATCH_MAX, "verdicts kept coming with no ML service: from where?"
    assert tally.duplicates == 0  # a batch that could not be scored was never produced, so never redone


def test_ml_service_slow_then_answering_503_and_500(rig: Rig) -> None:
    started = time.monotonic()
    ml = rig.ml_service()
    collector = rig.collector()
    with FaultyProxy(ml.port) as proxy:
        producer = rig.producer(rate=RATE, bad_every=BAD_EVERY, services=SERVICES)
        processor = rig.processor(proxy.url, BATCH_MAX=str(BATCH_MAX), ML_TIMEOUT_S="1")
        wait_progress(collector, 300)
        phases: list[tuple[str | int, float, float]] = [
            ("slow", 0.4, 4),  # slow but inside the processor's 1 s timeout
            ("slow", 1.5, 4),  # slower than the timeout: requests time out and are retried
            (503, 0, 4),
            (500, 0, 3),
        ]
        for mode, delay_s, seconds in phases:
            proxy.mode, proxy.delay_s = mode, delay_s
            time.sleep(seconds)
            assert processor.alive(), rig.diagnostics()
        proxy.mode = "pass"
        wait_progress(collector, 400)
        finish(rig, producer, collector)
        assert processor.terminate() == 0, rig.diagnostics()

    tally = make_tally(
        "ML service slow (0.4 s, 1.5 s > timeout), then 503, then 500", producer, collector, started, **proxy.counts
    )
    assert_nothing_lost(tally.lost, tally.misrouted, producer, rig)
    assert proxy.counts["delayed"] > 0 and proxy.counts["answered_503"] > 0 and proxy.counts["answered_500"] > 0
    # A timed-out request may have been scored upstream, but its verdicts are only produced from an answer.
    assert tally.duplicates == 0


def test_broker_stopped_then_killed_while_producer_and_processor_run(model_path: Path, tmp_path: Path) -> None:
    """The pipeline's own broker (not the session's): stopped cleanly once, SIGKILLed once, restarted each time."""
    started = time.monotonic()
    broker = LocalBroker(
        LocalBrokerConfig(host="127.0.0.1", port=free_port(), controller_port=free_port(), home=tmp_path / "kafka")
    )
    broker.start()
    settings = fresh_topics(broker.config.bootstrap)
    rig = Rig(settings, model_path, tmp_path)
    try:
        ml = rig.ml_service()
        collector = rig.collector()
        producer = rig.producer(rate=RATE, bad_every=BAD_EVERY, services=SERVICES)
        processor = rig.processor(ml.url, BATCH_MAX=str(BATCH_MAX))
        for bounce in (broker.stop, broker.kill):
            wait_progress(collector, 400, timeout_s=90)
            bounce()
            time.sleep(4)  # the producer buffers, the processor retries
            assert processor.alive(), rig.diagnostics()
            broker.start()
        wait_progress(collector, 400, timeout_s=90)
        finish(rig, producer, collector, timeout_s=150)
        assert processor.terminate() == 0, rig.diagnostics()
        tally = make_tally("broker stopped, then SIGKILLed, restarted each time", producer, collector, started)
        assert_nothing_lost(tally.lost, tally.misrouted, producer, rig)
    finally:
        rig.close()
        broker.stop()


def test_three_processors_one_killed_the_others_take_over(rig: Rig) -> None:
    partitions = {(murmur2(service.encode()) & 0x7FFFFFFF) % rig.settings.logs_partitions for service in SERVICES}
    assert partitions == set(range(3)), "every partition must carry services, or the kill may hit an idle one"
    started = time.monotonic()
    ml = rig.ml_service()
    collector = rig.collector()
    producer = rig.producer(rate=RATE, bad_every=BAD_EVERY, services=SERVICES)
    processors = [rig.processor(ml.url, **PER_BATCH) for _ in range(3)]
    # All three in the group, each with a partition: every service is being scored.
    collector.wait_until(lambda c: len(c.verdicts_by_service) == len(SERVICES), 60, "verdicts for every service")
    wait_progress(collector, 600)
    processors[1].kill()
    sent_at_kill = producer.sent

    def scores_after_kill(c: Collector) -> dict[str, list[float]]:
        """Per service, the scores of events produced after the kill, in arrival order."""
        scores: dict[str, list[float]] = {service: [] for service in SERVICES}
        for _, event_id, service, score in c.verdict_log:
            if int(event_id.rsplit("-", 1)[1]) > sent_at_kill:
                scores[service].append(score)
        return scores

    # Beyond the 10 s session timeout the survivors own the dead one's partition: its services come back.
    collector.wait_until(
        lambda c: min(len(v) for v in scores_after_kill(c).values()) >= 60, 90, "every service scored after the kill"
    )
    finish(rig, producer, collector)
    for survivor in (processors[0], processors[2]):
        assert survivor.terminate() == 0, rig.diagnostics()

    with collector._lock:
        per_service = scores_after_kill(collector)
    tally = make_tally(
        "3 processors in a group, one SIGKILLed",
        producer,
        collector,
        started,
        verdicts_after_kill=sum(len(v) for v in per_service.values()),
    )
    assert_nothing_lost(tally.lost, tally.misrouted, producer, rig)
    assert tally.duplicates <= 2 * BATCH_MAX  # the killed one's batch in hand and the one before it
    # Every service, including those of the killed processor's partition, is scored by the survivors, and
    # its latest scores are real ones (per-service state rebuilt after any warm-up), not placeholders.
    for service, scores in per_service.items():
        assert all(score != 0.0 for score in scores[-10:]), f"{service}: {scores[-10:]}"


def test_sigterm_to_each_service_exits_0_and_loses_nothing(rig: Rig) -> None:
    """SIGTERM to the processor, the ML service and the log simulator in turn, mid-stream."""
    started = time.monotonic()
    ml = rig.ml_service()
    collector = rig.collector()
    simulator = Child(
        "log-simulator",
        [sys.executable, "log-simulator/main.py", "--rate", str(RATE), "--quiet", "--seed", "5"],
        env=kafka_env(rig.settings),
        cwd=REPO_ROOT,
        log_path=rig.folder / "log-simulator.log",
    )
    rig.children.append(simulator)
    simulator.start()
    processor = rig.processor(ml.url, BATCH_MAX=str(BATCH_MAX))
    exits: dict[str, int] = {}

    wait_progress(collector, 400)
    exits["processor"] = processor.terminate()
    processor = rig.processor(ml.url, BATCH_MAX=str(BATCH_MAX))
    wait_progress(collector, 400)
    exits["ml-service"] = ml.terminate()
    time.sleep(1)
    ml.start()
    wait_progress(collector, 400)
    exits["log-simulator"] = simulator.terminate()
    summary = SIMULATOR_SUMMARY.search(simulator.log_text())
    assert summary, rig.diagnostics()
    sent, delivered, failed = (int(n) for n in summary.groups())

    logged = read_event_ids(rig.settings)
    missing = collector.wait_for(set(logged), timeout_s=90)
    exits["processor (at the end)"] = processor.terminate()
    exits["ml-service (at the end)"] = ml.terminate()
    tally = tally_ids(
        "SIGTERM to processor, ML service, simulator", set(logged), set(), collector, started, exits=exits
    )
    assert all(code == 0 for code in exits.values()), f"{exits}\n{rig.diagnostics()}"
    assert (sent, failed) == (delivered, 0)
    assert len(logged) == delivered == len(set(logged)), "the simulator's count differs from the logs topic"
    assert not missing and tally.lost == 0, rig.diagnostics()
    assert tally.duplicates == 0  # a clean stop commits exactly what it produced: nothing is redone
