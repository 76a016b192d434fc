"""The peers, side by side with the project: the same preloaded events, broker and topic for every contender.

N events of the original design (four fields, no key) are preloaded once into one ``logs`` topic; each
contender then reads that topic with a fresh consumer group and writes to its own output topic:

- the librdkafka relay floor (``benchmarks/peers/confluent_relay.py``: consume -> produce, no parsing);
- a Quix Streams pipeline doing the processor's job (``benchmarks/peers/quix_pipeline.py``);
- the original design's processor (its verdicts are stdout lines; it is slow, so it is timed on its first
  ``original_events`` lines);
- the project's processor with its defaults (and with each other ``PROCESSOR_WORKERS`` asked for).

The peers run in their own virtualenv (``.venv-peers``, ``make peers-venv``), as subprocesses: Quix Streams pins
confluent-kafka and pydantic below what the project uses. Every output topic stamps its records with the
broker's clock (``LogAppendTime``, whatever the producer sets), so a contender's rate is the events divided by
the time between its first and its last output record, the same clock for all.
"""

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from benchmarks.pipeline_bench import events
from benchmarks.pipeline_bench.measure import (
    VerdictCounter,
    processor_argv,
    processor_env,
    start_original_processor,
)
from benchmarks.pipeline_bench.stack import BENCH_DIR, REPO_ROOT, Stack, StepFailed, cpu_seconds, fresh_settings
from devstack.processes import Child
from eventbus import KafkaSettings, ensure_topics, make_admin, make_consumer

Progress = Callable[[str], None]
PEERS_DIR = BENCH_DIR / "peers"
PEERS_PYTHON = REPO_ROOT / ".venv-peers" / "bin" / "python"
POLL_S = 0.05

RELAY = "librdkafka relay (confluent-kafka, no parsing)"
QUIX = "Quix Streams, per-service EWMA z-score in its state"
ORIGINAL = "original design"


def project_name(workers: str) -> str:
    return "project, defaults" if workers == "default" else f"project, PROCESSOR_WORKERS={workers}"


@dataclass
class PeerRun:
    name: str
    events: int  # events it was given
    outputs: int  # output records counted (more than events: some written twice, at least once)
    span_s: float  # broker time between the first and the last output record
    total_s: float  # from the process's start until the last output was counted
    cpu_s: float  # CPU seconds of the contender's processes meanwhile (not the ML service's, not the broker's)

    @property
    def rate(self) -> float:
        """Events per second from the first to the last output record (an event written twice counts once)."""
        return self.events / self.span_s if self.span_s > 0 else float("nan")


def check_peers_python(python: Path) -> None:
    if not python.exists():
        raise StepFailed(f"{python} is missing: `make peers-venv` creates it (the bench's peers run in it)")


def create_output_topic(settings: KafkaSettings, name: str, partitions: int) -> None:
    """``name`` stamped by the broker on append (``LogAppendTime``): one clock for every contender's outputs."""
    admin = make_admin(settings)
    try:
        spec = NewTopic(name, partitions, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})
        try:
            admin.create_topics([spec], timeout_ms=30_000)
        except TopicAlreadyExistsError as error:
            raise StepFailed(f"output topic {name} exists already: a fresh one is needed") from error
    finally:
        admin.close()


def output_span(settings: KafkaSettings, topic: str) -> tuple[int, float]:
    """(records in ``topic``, seconds between its first and its last record's broker timestamp)."""
    consumer: KafkaConsumer = make_consumer(settings, group_id=None, client_id="bench-peers-span")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        begins, ends = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        firsts: list[int] = []
        lasts: list[int] = []
        for tp in partitions:
            if ends[tp] > begins[tp]:
                firsts += _timestamps(consumer, tp, begins[tp], begins[tp] + 1)
                lasts += _timestamps(consumer, tp, ends[tp] - 1, ends[tp])
        count = sum(ends[tp] - begins[tp] for tp in partitions)
        if not firsts or not lasts:
            return count, float("nan")
        return count, (max(lasts) - min(firsts)) / 1000.0
    finally:
        consumer.close()


def _timestamps(consumer: KafkaConsumer, tp: TopicPartition, start: int, stop: int) -> list[int]:
    """Broker timestamps (ms) of the records ``start`` .. ``stop`` - 1 of one partition."""
    consumer.assign([tp])
    consumer.seek(tp, start)
    stamps: list[int] = []
    deadline = time.monotonic() + 30
    while consumer.position(tp) < stop and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for record in records:
                if record.offset < stop:
                    if record.timestamp_type != 1:
                        raise StepFailed(f"{tp.topic} is not stamped on append: its rates would not compare")
                    stamps.append(record.timestamp)
    return stamps


def contender_settings(shared: KafkaSettings, label: str) -> KafkaSettings:
    """The shared ``logs`` topic, with fresh output topics (predictions stamped on append)."""
    suffix = f"{label}-{uuid.uuid4().hex[:8]}"
    settings = shared.model_copy(
        update={
            "predictions_topic": f"bench-predictions-{suffix}",
            "dlq_topic": f"bench-dlq-{suffix}",
            "repartition_topic": f"bench-by-service-{suffix}",
            "state_topic": f"bench-state-{suffix}",
            "incidents_topic": f"bench-incidents-{suffix}",
        }
    )
    create_output_topic(settings, settings.predictions_topic, shared.logs_partitions)
    ensure_topics(settings)
    return settings


def run_peers(
    stack: Stack,
    bootstrap: str,
    service_url: str,
    original_url: str,
    count: int,
    original_events: int,
    project_workers: list[str],
    progress: Progress,
    python: Path = PEERS_PYTHON,
) -> dict[str, object]:
    """Every contender on the same ``count`` preloaded events; what each did, by name, with the preload."""
    check_peers_python(python)
    shared = fresh_settings(bootstrap, "peers")
    loaded = events.preload(shared, count, keyless=True, original_design=True)
    progress(f"  preloaded {loaded.events:,} original-design events (no key) in {loaded.seconds:.1f}s")
    runs: list[PeerRun] = []

    def peer(name: str, script: str, label: str) -> None:
        settings = contender_settings(shared, label)
        env = {
            **os.environ,
            "PEER_BOOTSTRAP": bootstrap,
            "PEER_IN": shared.logs_topic,
            "PEER_OUT": settings.predictions_topic,
            "PEER_GROUP": f"bench-{label}-{uuid.uuid4().hex[:8]}",
        }
        child = stack.start(label, [str(python), str(PEERS_DIR / script)], env, cwd=PEERS_DIR)
        runs.append(_until_outputs(stack, child, name, settings, count, progress))

    peer(RELAY, "confluent_relay.py", "relay")
    peer(QUIX, "quix_pipeline.py", "quix")
    for workers in project_workers:
        settings = contender_settings(shared, f"project-{workers}")
        env = processor_env(settings, service_url, None if workers == "default" else workers)
        if workers == "default":
            env.pop("PRINT_MODE")  # the default (auto) too
        child = stack.start(f"processor-{workers}", processor_argv(), env)
        runs.append(_until_outputs(stack, child, project_name(workers), settings, count, progress))
    if original_events:
        runs.append(_original(stack, shared, original_url, min(count, original_events), progress))
    return {"events": count, "preload_rate": loaded.rate, "runs": {run.name: run for run in runs}}


def _until_outputs(
    stack: Stack, child: Child, name: str, settings: KafkaSettings, count: int, progress: Progress
) -> PeerRun:
    began = time.perf_counter()
    counter = VerdictCounter(settings, settings.predictions_topic)
    try:
        _wait_for_outputs(child, name, counter.count, count, began)
        total_s = time.perf_counter() - began
        cpu_s = cpu_seconds(child.pid)
    finally:
        counter.close()
    stack.stop(child)
    outputs, span_s = output_span(settings, settings.predictions_topic)
    run = PeerRun(name=name, events=count, outputs=outputs, span_s=span_s, total_s=total_s, cpu_s=cpu_s)
    progress(
        f"  {name}: {run.rate:,.0f} events/s first to last output ({outputs:,} in {span_s:.2f}s), CPU {cpu_s:.1f}s"
    )
    return run


def _wait_for_outputs(child: Child, name: str, outputs: Callable[[], int], count: int, began: float) -> None:
    """Until ``outputs()`` reaches ``count``; StepFailed if the contender exits first or takes over 600 s."""
    deadline = began + 600
    while (done := outputs()) < count:
        if not child.alive():
            raise StepFailed(f"{name} exited with {child.returncode}:\n{child.log_tail()}")
        if time.perf_counter() > deadline:
            raise StepFailed(f"{name}: only {done:,} of {count:,} outputs after 600 s:\n{child.log_tail()}")
        time.sleep(POLL_S)


def _original(stack: Stack, shared: KafkaSettings, service_url: str, count: int, progress: Progress) -> PeerRun:
    """The original processor on the same topic; its outputs are stdout lines, stamped as they arrive."""
    began = time.perf_counter()
    child, clock = start_original_processor(stack, shared, service_url)
    _wait_for_outputs(child, "the original processor", lambda: clock.count, count, began)
    total_s = time.perf_counter() - began
    cpu_s = cpu_seconds(child.pid)
    stack.stop(child)
    arrivals = [t for t, _ in clock.arrivals[:count]]
    span_s = arrivals[-1] - arrivals[0]
    run = PeerRun(ORIGINAL, events=count, outputs=len(arrivals), span_s=span_s, total_s=total_s, cpu_s=cpu_s)
    progress(f"  {ORIGINAL}: {run.rate:,.0f} events/s first to last line ({len(arrivals):,} lines)")
    return run


def ratios(runs: dict[str, PeerRun]) -> dict[str, float | None]:
    """The project with defaults against each peer (how many times its rate)."""
    project = runs.get(project_name("default"))
    out: dict[str, float | None] = {}
    for key, peer in (
        ("project_over_quix", QUIX),
        ("project_over_relay_floor", RELAY),
        ("project_over_original", ORIGINAL),
    ):
        other = runs.get(peer)
        out[key] = project.rate / other.rate if project and other and other.rate > 0 else None
    return out
