"""The fast path's per-event costs, each step timed alone in this process on the processor's own code.

A batch of ``BATCH`` bench events goes through what the processor does with it, one step at a time:
decoding and validating each message (``decode_event``: one pass of the JSON parser and the schema; its
JSON parsing alone is ``orjson.loads``), the per-service context (``ContextualScorer`` around a client that
answers at once), the hop to the ML service (``HttpScorer.score`` with those contexts, over HTTP to the
running service: encoding, the service's work, decoding the answer; in the binary columns the processor
sends, and in JSON), the verdict's encoding
(``verdict_json``) and its production (``send`` on the processor's Kafka client, ``KAFKA_CLIENT``, with its
producer options, flushed once per batch, as the processor does), and reading records as the processor's
consumer does (``poll`` on the same client, with its options). Each figure is the best of ``ROUNDS`` runs, in
microseconds per event: what the machine's time per event is made of, before any waiting.

``loop_profile`` then runs the whole processor (``anomaly_processor.app.run``: the real loop, with batching,
ownership, delivery, commits, printing, incidents, the state changelog and metrics) in this process under
cProfile over preloaded events, and splits its CPU per event by where it went.
"""

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from anomaly_processor import ProcessorSettings, consumer_overrides, producer_overrides
from anomaly_processor.ml_client import HttpScorer
from anomaly_processor.records import decode_event, verdict_json
from kafka import TopicPartition

from benchmarks.pipeline_bench import events
from eventbus import EventOrigin, KafkaSettings, LogEvent, make_stream_consumer, make_stream_producer, stream_client
from streaming_detector import Score
from streaming_detector.scorer import DEFAULT_CACHE_EVENTS, ContextualScorer
from streaming_detector.state import encode_state
from streaming_detector.tracker import ContextTracker

BATCH = 2_000  # the processor's default BATCH_MAX
ROUNDS = 5


@dataclass
class _Recorder:
    """A model client that remembers what it was asked and answers at once (the context's own cost alone)."""

    http: HttpScorer
    version: str  # the served model's, so that the scorer does not ask for its description again
    base_url: str = ""
    asked: list[tuple[list[LogEvent], list[Any]]] = field(default_factory=list)
    context_decimals: int | None = HttpScorer.context_decimals

    def model_info(self) -> dict[str, Any]:
        return self.http.model_info()

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def score(self, batch: Sequence[LogEvent], contexts: Sequence[Any] | None = None) -> list[Score]:
        self.asked.append((list(batch), list(contexts or [None] * len(batch))))
        return [Score(False, 0.0, self.version) for _ in batch]


def without_rhythm(scorer: ContextualScorer) -> ContextualScorer:
    """``scorer`` with a tracker lacking the time-of-day state (``ContextTracker(rhythm=False)``): what that
    state costs is the difference. Call it before the first event (its model is fetched here)."""
    scorer.score([])
    assert scorer.tracker is not None
    scorer.tracker = ContextTracker(scorer.tracker.config, rhythm=False)
    return scorer


def state_bytes(rhythm: bool) -> dict[str, int]:
    """One service's state with (or without) the time-of-day state: bytes in the tracker's arrays, and its
    changelog snapshot with a full history (4,000 events) over one day (a busy service) and over 29 days
    (one event every 5 minutes: every day of the ring held)."""
    tracker = ContextTracker(rhythm=rhythm)
    out = {"memory": sum(rows[0].nbytes for rows in vars(tracker).values() if isinstance(rows, np.ndarray))}
    for label, count, step_s in (("snapshot_1_day", 4_000, 10.0), ("snapshot_29_days", 29 * 288, 300.0)):
        latency = np.random.default_rng(0).lognormal(5.3, 0.25, count).tolist()
        tracker.features([label] * count, latency, [0.01] * count, (1.767e9 + np.arange(count) * step_s).tolist())
        out[label] = len(encode_state(tracker.config, tracker.export(label)))
    return out


def _best_us(step: Callable[[], object], per: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        began = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - began)
    return best / per * 1e6


def measure(settings: KafkaSettings, service_url: str) -> dict[str, Any]:
    """Microseconds per event of each step; ``settings``: a fresh topic set (verdicts are produced to it)."""
    pool = events.event_pool(size=BATCH)
    keyed = [value for _, value in events.serialise(pool, "cost-", 0, BATCH)]
    original = [value for _, value in events.original_records(pool, 0, BATCH)]
    origin = EventOrigin(settings.logs_topic, 0, 0, time.time())
    decoded = [decode_event(raw, origin) for raw in keyed]
    http = HttpScorer(service_url)
    recorder = _Recorder(http, str(http.model_info()["version"]), http.base_url)
    scorer = ContextualScorer(recorder, cache_events=max(DEFAULT_CACHE_EVENTS, 2 * BATCH), cooldown=False)
    out: dict[str, Any] = {
        "json_parse": _best_us(lambda: [orjson.loads(raw) for raw in keyed], BATCH),
        "decode_validate": _best_us(lambda: [decode_event(raw, origin) for raw in keyed], BATCH),
        "decode_validate_original": _best_us(lambda: [decode_event(raw, origin) for raw in original], BATCH),
    }
    out["validate"] = out["decode_validate"] - out["json_parse"]
    # Fresh events each round (the scorer remembers verdicts by event id), the context of warm services.
    rounds = [
        [decode_event(raw, origin) for _, raw in events.serialise(pool, f"ctx{r}-", 0, BATCH)]
        for r in range(ROUNDS + 3)
    ]
    # With and without the time-of-day state, a batch each in turn (a shared machine's noise hits both alike).
    plain_recorder = _Recorder(http, recorder.version, http.base_url)
    plain = without_rhythm(
        ContextualScorer(plain_recorder, cache_events=max(DEFAULT_CACHE_EVENTS, 2 * BATCH), cooldown=False)
    )
    for warm in rounds[:3]:
        scorer.score(warm)
        plain.score(warm)
    best = {"context": float("inf"), "context_no_rhythm": float("inf")}
    for fresh in rounds[3:]:
        for key, which in (("context", scorer), ("context_no_rhythm", plain)):
            gc.collect()  # else a collection falls in whichever scorer runs when it is due, the first one in turn
            began = time.perf_counter()
            which.score(fresh)
            best[key] = min(best[key], time.perf_counter() - began)
    out |= {key: seconds / BATCH * 1e6 for key, seconds in best.items()}
    batch, contexts = recorder.asked[-1]
    as_json = HttpScorer(service_url, batch_format="json")
    try:
        out["ml_hop"] = _best_us(lambda: http.score(batch, contexts), BATCH)
        out["ml_hop_json"] = _best_us(lambda: as_json.score(batch, contexts), BATCH)
        out["ml_hop_no_context"] = _best_us(lambda: http.score(batch), BATCH)
    finally:
        http.close()
        as_json.close()
    score = Score(False, 0.25, "bench")
    out["verdict_encode"] = _best_us(lambda: [verdict_json(event, score) for event in decoded], BATCH)
    verdicts = [verdict_json(event, score) for event in decoded]
    producer = make_stream_producer(settings, **producer_overrides())
    try:

        def produce() -> None:
            for event, value in zip(decoded, verdicts, strict=True):
                producer.send(settings.predictions_topic, value=value, key=event.key())
            producer.flush()

        produce()  # metadata and connection, untimed
        out["produce"] = _best_us(produce, BATCH)
    finally:
        producer.close()
    out["consume"] = _consume_us(settings, settings.predictions_topic, BATCH * (ROUNDS + 1))
    out["client"] = stream_client(settings)
    out["state_bytes"] = {"with": state_bytes(True), "without": state_bytes(False)}
    out["total"] = sum(out[k] for k in ("consume", "decode_validate", "context", "ml_hop", "verdict_encode", "produce"))
    return out


def _consume_us(settings: KafkaSettings, topic: str, count: int) -> float:
    """Reading ``count`` records of ``topic`` from its start with the processor's consumer options (no group)."""
    consumer = make_stream_consumer(settings, group_id=None, **consumer_overrides(ProcessorSettings()))
    producer = make_stream_producer(settings)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(producer.partitions_for(topic) or ())]
        consumer.assign(partitions)
        best = float("inf")
        for _ in range(ROUNDS):
            consumer.seek_to_beginning(*partitions)
            began = time.perf_counter()
            seen = 0
            while seen < count and time.perf_counter() - began < 60:
                seen += sum(len(records) for records in consumer.poll(timeout_ms=200).values())
            best = min(best, (time.perf_counter() - began) / max(seen, 1))
        return best * 1e6
    finally:
        consumer.close()
        producer.close()


LABELS = {
    "consume": "consume the event ({client} poll, the processor's options)",
    "json_parse": "JSON parsing alone (orjson.loads)",
    "validate": "schema validation (decode + validate - JSON parsing)",
    "decode_validate": "decode + validate (decode_event, one pass)",
    "decode_validate_original": "decode + validate, original-design event",
    "context": "per-service context (ContextualScorer, client answering at once)",
    "context_no_rhythm": "per-service context without the time-of-day state (hourly maxima, hour baselines)",
    "ml_hop": "processor -> ML service hop (/predict/batch, with contexts, as the processor sends them)",
    "ml_hop_json": "processor -> ML service hop, with contexts, as JSON",
    "ml_hop_no_context": "processor -> ML service hop, no contexts",
    "verdict_encode": "verdict encoding (verdict_json)",
    "produce": "produce the verdict ({client} send, flush per batch)",
    "total": "sum of the steps of one event's way",
}


def render(costs: dict[str, Any]) -> str:
    lines = [f"fast path, per event ({BATCH:,}-event batches, best of {ROUNDS}):"]
    client = costs.get("client", "kafka-python")
    lines += [f"  {costs[key]:8.2f} us  {label.format(client=client)}" for key, label in LABELS.items() if key in costs]
    if sizes := costs.get("state_bytes"):
        with_, without = sizes["with"], sizes["without"]
        lines.append(
            "one service's state with / without the time-of-day state: in memory "
            f"{with_['memory'] / 1024:,.0f} / {without['memory'] / 1024:,.0f} KiB; changelog snapshot, full history "
            f"over 1 day {with_['snapshot_1_day'] / 1024:,.0f} / {without['snapshot_1_day'] / 1024:,.0f} KiB, "
            f"over 29 days {with_['snapshot_29_days'] / 1024:,.0f} / {without['snapshot_29_days'] / 1024:,.0f} KiB"
        )
    return "\n".join(lines)
