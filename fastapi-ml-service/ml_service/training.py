"""Where training data comes from, and the ``save_model.py`` command line.

By default the point model learns the simulator's healthy profile (``streaming_detector.profiles``); with
``--from-topic`` it learns the history of the ``logs`` topic instead, keeping only events labelled
normal (unlabelled events parse as normal) and skipping malformed ones. The context model always learns
simulated healthy traffic of many services (``streaming_detector.train_context_model``): its features are
relative to each service's own history, so it needs no data of the services it will score.
"""

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from kafka import TopicPartition
from numpy.typing import NDArray

from eventbus import (
    LABEL_NORMAL,
    BadEventError,
    EventBusError,
    KafkaSettings,
    make_consumer,
    parse_event,
    wait_for_broker,
)
from ml_service.errors import TrainingDataError
from ml_service.model import metadata_path_for, save_bundle, train_model
from ml_service.settings import MLSettings
from streaming_detector import TrainingConfig, train_context_model
from streaming_detector.profiles import DEFAULT_SERVICES, generate_normal_events

log = logging.getLogger(__name__)

DEFAULT_TRAINING_EVENTS = 20_000
DEFAULT_MIN_EVENTS = 1_000


@dataclass(frozen=True)
class TrainingData:
    """Feature columns of the healthy events to train on, and where they came from."""

    latency_ms: NDArray[np.float64]
    error_rate: NDArray[np.float64]
    source: str


def simulated_training_data(count: int, *, seed: int = 0, services: Sequence[str] = DEFAULT_SERVICES) -> TrainingData:
    """``count`` healthy events from the simulator's normal profile."""
    events = generate_normal_events(count, services=services, seed=seed)
    return TrainingData(
        latency_ms=np.array([e.latency_ms for e in events]),
        error_rate=np.array([e.error_rate for e in events]),
        source=f"simulator seed={seed} services={','.join(services)}",
    )


@dataclass(frozen=True)
class TopicReadReport:
    """What reading the topic found, besides the training data itself."""

    read: int
    malformed: int
    not_normal: int


def topic_training_data(
    settings: KafkaSettings, *, topic: str, max_events: int, timeout_s: float
) -> tuple[TrainingData, TopicReadReport]:
    """Up to ``max_events`` normal events from the start of ``topic``, reading at most ``timeout_s``.

    Reads without a consumer group (partitions assigned by hand, nothing committed), up to the end
    offsets seen when it started, so it never disturbs the processor and ends even while the
    simulator keeps writing.
    """
    deadline = time.monotonic() + timeout_s
    wait_for_broker(settings, timeout_s)
    consumer = make_consumer(settings, group_id=None)
    latency: list[float] = []
    error: list[float] = []
    read = malformed = not_normal = 0
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TrainingDataError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap_servers}")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end_offsets = consumer.end_offsets(assigned)

        def behind() -> bool:
            return any(consumer.position(tp) < end_offsets[tp] for tp in assigned)

        while len(latency) < max_events and time.monotonic() < deadline and behind():
            for records in consumer.poll(timeout_ms=500, max_records=5_000).values():
                for record in records:
                    read += 1
                    try:
                        event = parse_event(record.value)
                    except BadEventError:
                        malformed += 1
                        continue
                    if event.label != LABEL_NORMAL:
                        not_normal += 1
                        continue
                    if len(latency) < max_events:
                        latency.append(event.latency_ms)
                        error.append(event.error_rate)
    finally:
        # A metadata refresh still in flight as the consumer closes fails with an ERROR after the read is done:
        # not news to someone training a model.
        logging.getLogger("kafka.cluster").setLevel(logging.CRITICAL)
        consumer.close()
    data = TrainingData(latency_ms=np.array(latency), error_rate=np.array(error), source=f"topic {topic}")
    return data, TopicReadReport(read=read, malformed=malformed, not_normal=not_normal)


def _parse_args(argv: Sequence[str] | None, default_output: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="save_model.py",
        description="Train the IsolationForest on healthy traffic and write model.joblib + model.json.",
    )
    parser.add_argument(
        "--output", type=Path, default=default_output, help=f"model file to write (default {default_output})"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=DEFAULT_TRAINING_EVENTS,
        help="events to train on: simulated, or at most this many read from the topic",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated events and of the forest")
    parser.add_argument(
        "--services", default=",".join(DEFAULT_SERVICES), help="comma-separated services of the simulated events"
    )
    parser.add_argument("--contamination", type=float, default=0.01, help="share of training events flagged")
    parser.add_argument("--n-estimators", type=int, default=100, help="trees in the forest")
    parser.add_argument(
        "--from-topic",
        nargs="?",
        const="",
        default=None,
        metavar="TOPIC",
        help="train on the history of this topic instead (no value: LOGS_TOPIC, default 'logs')",
    )
    defaults = TrainingConfig()
    parser.add_argument(
        "--context-services",
        type=int,
        default=defaults.services,
        help="simulated services the context model learns from (default %(default)s)",
    )
    parser.add_argument(
        "--context-events-per-service",
        type=int,
        default=defaults.events_per_service,
        help="healthy events per simulated service for the context model (default %(default)s)",
    )
    parser.add_argument("--timeout-s", type=float, default=60.0, help="give up reading the topic after this long")
    parser.add_argument(
        "--min-events", type=int, default=DEFAULT_MIN_EVENTS, help="refuse to train on fewer usable events"
    )
    args = parser.parse_args(argv)
    if min(args.count, args.min_events, args.context_services, args.context_events_per_service) < 1:
        parser.error("--count, --min-events, --context-services and --context-events-per-service must be positive")
    if not 0 < args.contamination < 0.5:
        parser.error("--contamination must be in (0, 0.5)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``python save_model.py [options]``; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv, MLSettings().model_path)
    try:
        if args.from_topic is None:
            services = [s.strip() for s in args.services.split(",") if s.strip()]
            data = simulated_training_data(args.count, seed=args.seed, services=services)
        else:
            kafka = KafkaSettings()
            topic = args.from_topic or kafka.logs_topic
            data, report = topic_training_data(kafka, topic=topic, max_events=args.count, timeout_s=args.timeout_s)
            print(
                f"read {report.read} events from {topic!r}: {len(data.latency_ms)} normal kept, "
                f"{report.not_normal} labelled anomalous and {report.malformed} malformed skipped"
            )
        if len(data.latency_ms) < args.min_events:
            raise TrainingDataError(
                f"only {len(data.latency_ms)} usable events from {data.source}, need --min-events {args.min_events}"
            )
        forest, metadata = train_model(
            data.latency_ms,
            data.error_rate,
            source=data.source,
            contamination=args.contamination,
            n_estimators=args.n_estimators,
            seed=args.seed,
        )
        context_training = TrainingConfig(
            services=args.context_services, events_per_service=args.context_events_per_service, seed=args.seed
        )
        context_forest, context_metadata = train_context_model(context_training)
        manifest = save_bundle(forest, metadata, context_forest, context_metadata, args.output)
    except (TrainingDataError, EventBusError) as exc:
        print(f"save_model: {exc}", file=sys.stderr)
        return 1
    print(
        f"trained {manifest.version} on {metadata.training.rows} events ({data.source}); "
        f"threshold {metadata.threshold:.4f} flags {metadata.contamination:.1%} of them"
    )
    print(
        f"context model on {context_metadata['training_rows']} feature vectors of {args.context_services} simulated "
        f"services; threshold {context_metadata['threshold']:g} ({len(context_metadata['features'])} features)"
    )
    print(f"wrote {args.output} and {metadata_path_for(args.output)}")
    return 0
