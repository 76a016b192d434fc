"""The pipeline on a real three-broker cluster while brokers crash: nothing is lost, the group carries on.

Three local KRaft brokers (combined broker + controller, topics with replication 3 and
min.insync.replicas 2), the log simulator, the ML service and two processors in one group, all real
processes. The broker leading a busy partition of ``logs`` is SIGKILLed and restarted, then the
controller quorum's leader. Every event the simulator got acknowledged must have exactly one verdict
(duplicates are counted: delivery is at-least-once), and the time until every service's new events
get verdicts again is reported.
"""

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
from local_kafka.cluster import ClusterConfig, LocalCluster

from devstack.harness import (
    REPO_ROOT,
    SIMULATOR_SUMMARY,
    Child,
    kafka_env,
    read_event_ids,
    tally_ids,
    wait_progress,
)
from eventbus import KafkaSettings
from tests.conftest import fresh_topics
from tests.faults.conftest import Rig

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.both_clients]

RATE = 200  # events/s: three brokers and five more processes share 2 cores
BATCH_MAX = 200
SERVICES = ("auth", "payment", "orders", "search", "cart", "email", "billing", "gateway", "inventory")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    made = LocalCluster(ClusterConfig(size=3, host="127.0.0.1", home=tmp_path_factory.mktemp("cluster"), secure=False))
    made.start()
    try:
        yield made
    finally:
        made.stop()


def partition_of(service: str, partitions: int = 3) -> int:
    return (murmur2(service.encode()) & 0x7FFFFFFF) % partitions


def group_lag(settings: KafkaSettings, group: str) -> int:
    """Events of ``logs`` the group has not committed (read without joining it)."""
    consumer = KafkaConsumer(**settings.client_configs(), group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(settings.logs_topic, p) for p in range(settings.logs_partitions)]
        ends = consumer.end_offsets(partitions)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in partitions)
    finally:
        consumer.close(autocommit=False)


def test_partition_leader_then_controller_sigkilled_and_restarted(
    cluster: LocalCluster, model_path: Path, tmp_path: Path
) -> None:
    assert {partition_of(s) for s in SERVICES} == {0, 1, 2}, "every partition must carry services"
    started = time.monotonic()
    settings = fresh_topics(cluster.bootstrap)
    rig = Rig(settings, model_path, tmp_path)
    try:
        ml = rig.ml_service()
        collector = rig.collector()
        simulator = Child(
            "log-simulator",
            [sys.executable, "log-simulator/main.py", "--rate", str(RATE), "--quiet", "--seed", "11"]
            + ["--services", ",".join(SERVICES)],
            env=kafka_env(settings),
            cwd=REPO_ROOT,
            log_path=tmp_path / "log-simulator.log",
        )
        rig.children.append(simulator)
        simulator.start()
        processors = [rig.processor(ml.url, BATCH_MAX=str(BATCH_MAX)) for _ in range(2)]
        collector.wait_until(lambda c: len(c.verdicts_by_service) == len(SERVICES), 90, "verdicts for every service")
        wait_progress(collector, 400, timeout_s=90)

        recovery: dict[str, float] = {}
        killed: dict[str, int] = {}
        busiest = max(range(3), key=lambda p: sum(partition_of(s) == p for s in SERVICES))
        victims = [
            (f"leader of logs[{busiest}]", lambda: cluster.partition_leader(settings.logs_topic, busiest)),
            ("controller", cluster.active_controller),
        ]
        for what, pick in victims:
            node = killed[what] = pick()
            at = time.time()
            cluster.kill_node(node)
            recovery[what] = round(collector.wait_recovered(at, SERVICES, timeout_s=90), 1)
            assert all(p.alive() for p in processors), rig.diagnostics()
            cluster.start_node(node)
            wait_progress(collector, 400, timeout_s=90)

        assert simulator.terminate() == 0, rig.diagnostics()
        summary = SIMULATOR_SUMMARY.search(simulator.log_text())
        assert summary, rig.diagnostics()
        sent, delivered, failed = (int(n) for n in summary.groups())
        logged = read_event_ids(settings)
        missing = collector.wait_for(set(logged), timeout_s=120)
        for processor in processors:
            assert processor.terminate() == 0, rig.diagnostics()
        tally = tally_ids(
            "3-broker cluster: leader of logs, then controller, SIGKILLed and restarted",
            set(logged),
            set(),
            collector,
            started,
            killed_nodes=killed,
            recovery_s=recovery,
        )
        lag = group_lag(settings, rig.group)
    finally:
        rig.close()

    assert (sent, failed) == (delivered, 0), "Kafka refused events while a broker was down"
    assert len(logged) == delivered, "the simulator's count differs from the logs topic"
    assert len(logged) == len(set(logged)), "an event was written twice to logs: the idempotent producer failed"
    assert not missing and tally.lost == 0, rig.diagnostics()
    assert tally.dead_lettered == 0 and tally.misrouted == 0
    # At-least-once: a commit lost with its broker redoes at most a batch in hand per processor per kill.
    assert tally.duplicates <= len(victims) * len(processors) * 2 * BATCH_MAX
    assert lag == 0, "the processors' group did not commit everything it scored"
