"""What the changelog costs: processor throughput with and without it, and the restore time of 1,000 services.

    .venv/bin/python benchmarks/state_bench.py            # 100,000 events of 20 services, 3 pairs; 1,000 services
    .venv/bin/python benchmarks/state_bench.py --quick    # 30,000 events, 2 pairs, a small model

Starts its own local KRaft broker and the project's ML service (temp folder, free ports) and stops them by pid.
Throughput: one pass over the same pre-filled topic through the real ``Pipeline`` (HTTP scoring, produce,
commit, in this process), alternating STATE_CHANGELOG=1 / 0 (each with a fresh group and state topic), the
first batch excluded. Restore: ``--services`` full-history states (4,000 events each, ~160 KiB) in the
changelog; the time to read them into the local store on assignment, then to bring each into memory (its first
event scored). A benchmark, not a test.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from anomaly_processor import Pipeline, Printer, ProcessorSettings, consumer_overrides, producer_overrides
from anomaly_processor.app import make_scorer, tune_garbage_collector
from kafka import TopicPartition

from benchmarks.pipeline_bench.stack import (
    REPO_ROOT,
    SAVE_MODEL,
    Stack,
    fresh_settings,
    start_broker,
    start_project_service,
    warm_up_group_coordinator,
)
from eventbus import KafkaSettings, make_consumer, make_producer
from streaming_detector.profiles import generate_normal_events
from streaming_detector.state import encode_state
from streaming_detector.tracker import ContextTracker

SMALL_MODEL = ["--context-services", "6", "--context-events-per-service", "400", "--count", "3000"]


def fill(kafka: KafkaSettings, count: int, services: int) -> None:
    producer = make_producer(kafka, linger_ms=50, batch_size=1 << 20)
    names = [f"svc-{i}" for i in range(services)]
    for event in generate_normal_events(count, services=names, seed=1):
        producer.send(kafka.logs_topic, event.to_json(), key=event.key())
    producer.flush()
    producer.close()


def pipeline_for(kafka: KafkaSettings, settings: ProcessorSettings) -> tuple[Pipeline, list]:
    scorer = make_scorer(settings)
    consumer = make_consumer(kafka, group_id=f"bench-{uuid.uuid4().hex[:6]}", **consumer_overrides(settings))
    producer = make_producer(kafka, **producer_overrides())
    restorer = make_consumer(kafka, group_id=None) if settings.state_changelog else None
    pipeline = Pipeline(
        consumer, producer, scorer, kafka=kafka, settings=settings, printer=Printer("quiet"), restorer=restorer
    )
    return pipeline, [consumer, producer, scorer]


def close(pipeline: Pipeline, clients: list) -> None:
    pipeline.close()
    consumer, producer, scorer = clients
    consumer.close(autocommit=False)
    producer.close()
    scorer.close()


def throughput(kafka: KafkaSettings, ml_url: str, count: int, changelog: bool) -> tuple[float, float]:
    """(events/s of one pass, MiB of state written per second)."""
    kafka = kafka.model_copy(update={"state_topic": f"{kafka.state_topic}-{uuid.uuid4().hex[:6]}"})
    settings = ProcessorSettings(print_mode="quiet", ml_service_url=ml_url, state_changelog=changelog)
    pipeline, clients = pipeline_for(kafka, settings)
    done, first, started = 0, 0, 0.0
    try:
        while done < count:
            handled = pipeline.run_once()
            if handled and not first:
                first, started = handled, time.perf_counter()
            done += handled
        pipeline.commit_handled()
        elapsed = time.perf_counter() - started
        written = pipeline.metrics.state_bytes_saved._value.get() / 2**20
        return (done - first) / elapsed, written / elapsed
    finally:
        close(pipeline, clients)


def restore(kafka: KafkaSettings, ml_url: str, services: int) -> tuple[float, float, float]:
    """(seconds to read ``services`` states on assignment, seconds to bring them all into memory, MiB read)."""
    tracker = ContextTracker()
    tracker.features(["full"] * 4100, [200.0 + (i % 17) for i in range(4100)], [0.01] * 4100)
    data = encode_state(tracker.config, tracker.export("full"))
    producer = make_producer(kafka, linger_ms=50, batch_size=1 << 20, max_request_size=4 << 20)
    for i in range(services):
        producer.send(kafka.state_topic, data, key=f"svc-{i}".encode())
    producer.flush()
    producer.close()
    settings = ProcessorSettings(print_mode="quiet", ml_service_url=ml_url)
    pipeline, clients = pipeline_for(kafka, settings)
    try:
        assert pipeline.state is not None
        count = len(clients[1].partitions_for(kafka.repartition_topic))
        pipeline.state.assigned([TopicPartition(kafka.repartition_topic, p) for p in range(count)])
        started = time.perf_counter()
        pipeline.state.catch_up(pipeline.stop)
        read = time.perf_counter() - started
        events = generate_normal_events(services, services=[f"svc-{i}" for i in range(services)], seed=2)
        scorer = clients[2]
        scorer.score(events[:1])  # the model's description, fetched once
        started = time.perf_counter()
        scorer.score(events[1:])
        loaded = time.perf_counter() - started
        return read, loaded, services * len(data) / 2**20
    finally:
        close(pipeline, clients)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the pre-filled topic")
    parser.add_argument("--event-services", type=int, default=20, help="services the events are spread over")
    parser.add_argument("--pairs", type=int, default=3, help="with / without changelog runs, alternating")
    parser.add_argument("--services", type=int, default=1000, help="full-history services to restore")
    parser.add_argument("--quick", action="store_true", help="30,000 events, 2 pairs, a small model")
    args = parser.parse_args()
    if args.quick:
        args.events, args.pairs = 30_000, 2
    tune_garbage_collector()
    with tempfile.TemporaryDirectory(prefix="state-bench-") as folder:
        stack = Stack(Path(folder))
        try:
            bootstrap = start_broker(stack)
            warm_up_group_coordinator(bootstrap)
            model = Path(folder) / "model.joblib"
            subprocess.run(
                [sys.executable, str(SAVE_MODEL), "--output", str(model), *(SMALL_MODEL if args.quick else [])],
                cwd=REPO_ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            ml_url = start_project_service(stack, model, workers=1)
            kafka = fresh_settings(bootstrap, "state")
            fill(kafka, args.events, args.event_services)
            print(f"{args.events:,} events of {args.event_services} services in {kafka.logs_topic}", flush=True)
            rates: dict[bool, list[float]] = {True: [], False: []}
            for pair in range(args.pairs):
                for changelog in (True, False) if pair % 2 == 0 else (False, True):
                    rate, mib_s = throughput(kafka, ml_url, args.events, changelog)
                    rates[changelog].append(rate)
                    extra = f", {mib_s:.1f} MiB/s of state" if changelog else ""
                    print(f"STATE_CHANGELOG={int(changelog)}: {rate:,.0f} events/s{extra}", flush=True)
            ratio = statistics.median(a / b for a, b in zip(rates[True], rates[False], strict=True))
            print(
                f"throughput: changelog {statistics.median(rates[True]):,.0f} / none "
                f"{statistics.median(rates[False]):,.0f} events/s; median ratio of pairs {ratio:.3f} "
                f"(target >= 0.90: {'met' if ratio >= 0.9 else 'NOT met'})"
            )
            read, loaded, mib = restore(fresh_settings(bootstrap, "restore"), ml_url, args.services)
            print(
                f"restore of {args.services:,} full-history services ({mib:.0f} MiB): read on assignment {read:.2f} s, "
                f"brought into memory by their first events {loaded:.2f} s"
            )
        finally:
            stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
