"""NAB as a user gets it: the corpus replayed through the running pipeline, scored on the published verdicts.

    python benchmarks/nab_pipeline.py --nab path/to/nab        (make eval-pipeline NAB=path/to/nab)

Starts its own broker (free ports, a temporary folder), the ML service on a model written by its own
``save_model.py`` and one processor, then sends every NAB file as one service (rows in time order, value as
``latency_ms``, ``error_rate`` 0, event ids ``<file>-<row>``) and reads ``predictions`` until every event has
its verdict. NAB's three profiles are scored (full corpus and halves) on what a user gets at the shipped
threshold: a detection is a page, the first verdict of each incident the processor opened (its
``incident_id``); and, beside it, every ``anomaly: true``. The same events go through the offline replay of
``make eval`` (the same model, trained in this process) and are scored the same way: the two must agree.
``make eval``'s own NAB figure (a threshold swept over the corpus) is printed too.

A file with negative values (one in NAB) is shifted up by its minimum in both replays: the schema refuses a
negative latency, and the offline replay must see what the pipeline sees.
"""

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, TopicPartition
from local_kafka import LocalBroker, LocalBrokerConfig

from devstack.harness import SERVICE_DIR, MLServiceProcess, ProcessorProcess, fresh_topics, kafka_env
from devstack.processes import free_port
from evaluation.cli import column_events, paged, replay
from evaluation.nab import PROFILES, NabSeries, load_corpus, losses, score_corpus
from eventbus import KafkaSettings, make_producer
from streaming_detector import Sensitivity, TrainingConfig, in_process_scorer, train_context_model

BATCH = 2000


@dataclass
class Detections:
    """Per NAB file (by name), 0/1 per row: pages (an incident's first alert) and every alert."""

    pages: dict[str, np.ndarray]
    alerts: dict[str, np.ndarray]

    def differing_rows(self, other: "Detections") -> int:
        return sum(int(np.sum(self.pages[name] != other.pages[name])) for name in self.pages)

    def page_count(self) -> int:
        return int(sum(p.sum() for p in self.pages.values()))

    def windows_paged(self, corpus: Sequence[NabSeries]) -> int:
        """Labelled windows with at least one page in them."""
        return sum(bool(self.pages[s.name][left : right + 1].any()) for s in corpus for left, right in s.windows)


def replayable(corpus: Sequence[NabSeries]) -> list[NabSeries]:
    """The corpus as the pipeline can carry it: a file with negative values shifted up by its minimum."""
    return [replace(s, values=s.values - s.values.min()) if s.values.min() < 0 else s for s in corpus]


def epoch_seconds(series: NabSeries) -> list[float]:
    return series.timestamps.astype("datetime64[s]").astype(np.int64).astype(np.float64).tolist()


def offline(
    corpus: Sequence[NabSeries], training: TrainingConfig, sensitivity: str | None
) -> tuple[Detections, dict[str, np.ndarray]]:
    """``make eval``'s replay of the same events: pages and alerts at the shipped threshold, and the sweep's
    figures (``alert_score``: each incident's first score)."""
    forest, metadata = train_context_model(training)
    pages, alerts, swept = {}, {}, {}
    for series in corpus:
        values = series.values.tolist()
        events = column_events([series.service] * len(values), values, [0.0] * len(values), epoch_seconds(series))
        level = Sensitivity(sensitivity) if sensitivity else None
        scorer = in_process_scorer(forest, metadata, cache_events=BATCH, cooldown=False, sensitivity=level)
        published = replay(scorer, events, BATCH)
        output = paged(events, published)
        pages[series.name] = output.anomaly.astype(np.float64)
        alerts[series.name] = published.anomaly.astype(np.float64)
        swept[series.name] = output.alert_score
    return Detections(pages, alerts), swept


def train_model(folder: Path, training: TrainingConfig) -> Path:
    """The ML service's model file, its context model trained as ``training`` says (the point model is small:
    it only answers while a service warms up, and a warming service opens no incident)."""
    path = folder / "model.joblib"
    subprocess.run(
        [sys.executable, "save_model.py", "--output", str(path), "--count", "3000", "--n-estimators", "50",
         "--context-services", str(training.services),
         "--context-events-per-service", str(training.events_per_service), "--seed", str(training.seed)],
        cwd=SERVICE_DIR, check=True, capture_output=True,
    )  # fmt: skip
    return path


def send(settings: KafkaSettings, corpus: Sequence[NabSeries]) -> int:
    """Every file's rows as events of one service, keyed by it (so in order); the count sent."""
    producer = make_producer(settings, linger_ms=20)
    sent = 0
    try:
        for k, series in enumerate(corpus):
            service = series.service
            times = np.datetime_as_string(series.timestamps, unit="s")
            for row, (at, value) in enumerate(zip(times.tolist(), series.values.tolist(), strict=True)):
                event = {"event_id": f"{k}-{row}", "timestamp": f"{at}+00:00", "service": service,
                         "latency_ms": value, "error_rate": 0.0}  # fmt: skip
                producer.send(settings.logs_topic, key=service.encode(), value=orjson.dumps(event))
                sent += 1
        producer.flush(120)
    finally:
        producer.close(timeout=10)
    return sent


def collect(settings: KafkaSettings, corpus: Sequence[NabSeries], expected: int, timeout_s: float) -> Detections:
    """Read ``predictions`` (and the dead letters) from the start until every event is accounted for."""
    pages = {s.name: np.zeros(len(s.values)) for s in corpus}
    alerts = {s.name: np.zeros(len(s.values)) for s in corpus}
    seen_incidents: set[str] = set()
    # An incident's first alert may reach the topic after a later one of the same incident only across
    # partitions, never within a service (one key, one partition): the first seen is the page.
    accounted: set[str] = set()
    dead = 0
    consumer = KafkaConsumer(**settings.client_configs(), enable_auto_commit=False)
    try:
        topics = [settings.predictions_topic, settings.dlq_topic]
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        last_report = time.monotonic()
        while len(accounted) + dead < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expected - len(accounted) - dead} of {expected} events have no verdict")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.topic == settings.dlq_topic:
                        dead += 1
                        continue
                    verdict = orjson.loads(record.value)
                    if verdict["event_id"] in accounted:
                        continue  # a duplicate after a redelivery: the first copy counts
                    accounted.add(verdict["event_id"])
                    k, row = (int(part) for part in verdict["event_id"].split("-"))
                    name = corpus[k].name
                    if verdict["anomaly"]:
                        alerts[name][row] = 1.0
                    incident = verdict.get("incident_id")
                    if incident and incident not in seen_incidents:
                        seen_incidents.add(incident)
                        pages[name][row] = 1.0
            if time.monotonic() - last_report > 15:
                print(f"  pipeline: {len(accounted)}/{expected} verdicts", flush=True)
                last_report = time.monotonic()
    finally:
        consumer.close(autocommit=False)
    if dead:
        raise RuntimeError(f"{dead} NAB events were dead-lettered: the replay must be valid events")
    return Detections(pages, alerts)


def through_pipeline(
    corpus: Sequence[NabSeries],
    folder: Path,
    training: TrainingConfig,
    sensitivity: str | None,
    timeout_s: float,
    bootstrap: str | None = None,
) -> Detections:
    """Start the ML service and a processor (and a broker, unless ``bootstrap`` names one) under ``folder``,
    replay the corpus on fresh topics, collect the verdicts; stop all it started."""
    broker = None
    if bootstrap is None:
        config = LocalBrokerConfig(
            host="127.0.0.1", port=free_port(), controller_port=free_port(), home=folder / "kafka"
        )
        broker = LocalBroker(config)
        broker.start()
        bootstrap = config.bootstrap
    ml: MLServiceProcess | None = None
    processor: ProcessorProcess | None = None
    try:
        settings = fresh_topics(bootstrap)
        ml = MLServiceProcess(train_model(folder, training), folder)
        ml.start()
        extra = {"BATCH_MAX": str(BATCH)} | ({"SENSITIVITY": sensitivity} if sensitivity else {})
        processor = ProcessorProcess(
            kafka_env(settings), folder, group="nab", scorer_url=ml.url, name="processor", **extra
        )
        processor.start()
        sent = send(settings, corpus)
        print(f"  pipeline: {sent} events sent, collecting verdicts ...", flush=True)
        return collect(settings, corpus, sent, timeout_s)
    except BaseException:
        for child in (processor, ml):
            if child is not None:
                print(child.log_tail(), file=sys.stderr)
        raise
    finally:
        for child in (processor, ml):
            if child is not None:
                child.stop()
        if broker is not None:
            broker.stop()


def figures(corpus: Sequence[NabSeries], scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Normalised NAB score of each profile on the full corpus and its halves (files at even / odd positions)."""
    parts = {"full": corpus, "half_even": corpus[0::2], "half_odd": corpus[1::2]}
    return {
        part: {n: r.normalised if r.perfect_score else math.nan for n, r in score_corpus(files, scores).items()}
        for part, files in parts.items()
    }


def run(
    nab: Path,
    folder: Path,
    *,
    training: TrainingConfig | None = None,
    sensitivity: str | None = None,
    every: int = 1,
    timeout_s: float = 1800.0,
    bootstrap: str | None = None,
) -> dict[str, Any]:
    """Both replays of the corpus at ``nab``; every figure, and how many rows' pages differ."""
    training = training or TrainingConfig()
    corpus = replayable(load_corpus(nab)[::every])
    started = time.perf_counter()
    local, swept = offline(corpus, training, sensitivity)
    offline_s = time.perf_counter() - started
    started = time.perf_counter()
    remote = through_pipeline(corpus, folder, training, sensitivity, timeout_s, bootstrap)
    pipeline_s = time.perf_counter() - started
    return {
        "files": len(corpus),
        "events": sum(len(s.values) for s in corpus),
        "pipeline_pages": figures(corpus, remote.pages),
        "pipeline_alerts": figures(corpus, remote.alerts),
        "offline_pages": figures(corpus, local.pages),
        "offline_swept": figures(corpus, swept),
        "pages": {"pipeline": remote.page_count(), "offline": local.page_count()},
        "windows": {"labelled": sum(len(s.windows) for s in corpus), "paged": remote.windows_paged(corpus)},
        "losses_standard": {
            category: {**asdict(loss), "points": loss.points}
            for category, loss in losses(corpus, {k: v > 0 for k, v in remote.pages.items()}, PROFILES[0]).items()
        },
        "rows_with_different_pages": remote.differing_rows(local),
        "seconds": {"offline": round(offline_s, 1), "pipeline": round(pipeline_s, 1)},
    }


ROWS = (
    ("pipeline_pages", "pipeline: pages (an incident's first verdict)"),
    ("offline_pages", "offline: pages, same threshold"),
    ("pipeline_alerts", "pipeline: every anomaly: true"),
    ("offline_swept", "offline: threshold swept (make eval)"),
)


def report(result: dict[str, Any]) -> str:
    lines = [f"NAB through the pipeline: {result['files']} files, {result['events']} events"]
    profiles = list(result["pipeline_pages"]["full"])
    for profile in profiles:
        lines.append(f"\n{profile:<48} {'full':>6} {'even':>6} {'odd':>6}")
        for key, label in ROWS:
            cells = " ".join(f"{result[key][part][profile]:6.1f}" for part in ("full", "half_even", "half_odd"))
            lines.append(f"  {label:<46} {cells}")
    lines.append(
        f"\npages: pipeline {result['pages']['pipeline']}, offline {result['pages']['offline']}; rows whose page "
        f"differs: {result['rows_with_different_pages']}; windows paged through the pipeline: "
        f"{result['windows']['paged']}/{result['windows']['labelled']}; seconds: {result['seconds']}"
    )
    lines.append(
        "\nstandard points the pipeline's pages lose (of 100), by category: windows, missed windows and false\n"
        "pages, then the points lost to missed windows, late first pages, false pages, and in all"
    )
    lines.append(
        f"  {'category':<24} {'windows':>7} {'missed':>6} {'false':>5}"
        f" {'missed':>7} {'late':>5} {'false':>6} {'lost':>5}"
    )
    for category, loss in sorted(result["losses_standard"].items(), key=lambda item: -item[1]["points"]):
        lines.append(
            f"  {category:<24} {loss['windows']:>7} {loss['missed']:>6} {loss['false_alarms']:>5} "
            f"{loss['missed_points']:7.1f} {loss['late_points']:5.1f} {loss['false_points']:6.1f} {loss['points']:5.1f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nab", type=Path, required=True, help="a NAB-layout folder (data/..., labels/...)")
    parser.add_argument("--every", type=int, default=1, help="every Nth file of the labels file only (a quick look)")
    parser.add_argument("--sensitivity", help="the processor's SENSITIVITY (default: its own default)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="nab-pipeline-") as scratch:
        result = run(args.nab, Path(scratch), sensitivity=args.sensitivity, every=args.every)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
