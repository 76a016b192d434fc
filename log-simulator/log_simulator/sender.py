"""Send a stream of events to Kafka at a paced rate, count every delivery, and report what happened.

Every send gets a callback and an errback, so each event ends up ``delivered`` or ``failed``: a failure
is counted and logged, never silently lost. Stopping (count reached, duration over, Ctrl-C, SIGTERM)
flushes what is in flight before the summary is written.
"""

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from kafka.errors import KafkaError, KafkaTimeoutError

from eventbus import LogEvent

log = logging.getLogger(__name__)

PER_EVENT_OUTPUT_MAX_RATE = 20.0  # events/s up to which each event is printed, as in the original design
_MAX_BATCH = 2000  # events sent per pacer release at most, so stop requests and progress stay responsive
_REPORTED_FAILURES = 10  # failures logged one by one; past this many they are only counted
_SLOW_CHECK_AFTER_S = 3.0  # when to compare the actual rate with the asked one (once)


class Pacer(Protocol):
    def wait(self, limit: int) -> int: ...


class Deliveries:
    """Thread-safe tally of send outcomes (callbacks run on the producer's I/O thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0
        self.failed_labels: Counter[str] = Counter()

    def on_delivered(self, _metadata: Any) -> None:
        with self._lock:
            self.delivered += 1

    def on_failed(self, label: str, error: BaseException) -> None:
        with self._lock:
            self.failed += 1
            self.failed_labels[label] += 1
            failed = self.failed
        if failed <= _REPORTED_FAILURES:
            log.error("delivery failed (%s event): %s", label, error)
        elif failed == _REPORTED_FAILURES + 1:
            log.error("more deliveries failed; counting them in the summary without logging each")


@dataclass
class RunSummary:
    """What a run sent, by label, and how each send ended."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)
    anomalies_started: Counter[str] = field(default_factory=Counter)
    bad_rows: int = 0
    unconfirmed: int = 0  # neither delivered nor failed when the flush timed out
    stopped_by: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def progress_line(self) -> str:
        return (
            f"Progress: sent {self.sent} ({self.rate:.0f}/s), "
            f"anomalies injected: {_counts(self.anomalies_started)}, failed {self.failed}"
        )

    def summary_line(self) -> str:
        parts = [
            f"Summary: sent {self.sent} in {self.elapsed_s:.1f}s ({self.rate:.0f}/s), "
            f"delivered {self.delivered}, failed {self.failed}",
            f"labels: {_counts(self.labels)}",
            f"anomalies injected: {_counts(self.anomalies_started)}",
        ]
        if self.bad_rows:
            parts.append(f"bad rows skipped: {self.bad_rows}")
        if self.unconfirmed:
            parts.append(f"unconfirmed at exit: {self.unconfirmed}")
        parts.append(f"stopped by: {self.stopped_by}")
        return "; ".join(parts)


def _counts(counter: Counter[str]) -> str:
    return " ".join(f"{name}={n}" for name, n in sorted(counter.items())) or "none"


class Reporter:
    """The user-facing output on stdout: one line per event at low rates, else a periodic progress line."""

    def __init__(
        self,
        *,
        per_event: bool,
        quiet: bool,
        progress_interval_s: float,
        out: TextIO,
        target_rate: float | None = None,
    ) -> None:
        self.per_event = per_event and not quiet
        self.progress = not per_event and not quiet
        self._interval = progress_interval_s
        self._out = out
        self._next_progress = progress_interval_s
        self._target_rate = target_rate
        self._warned_slow = False

    def event_sent(self, value: bytes) -> None:
        if self.per_event:
            print(f"Sent: {value.decode()}", file=self._out, flush=True)

    def tick(self, summary: RunSummary) -> None:
        if self.progress and summary.elapsed_s >= self._next_progress:
            print(summary.progress_line(), file=self._out, flush=True)
            self._next_progress = summary.elapsed_s + self._interval
        if self._target_rate and not self._warned_slow and summary.elapsed_s >= _SLOW_CHECK_AFTER_S:
            if summary.rate < 0.9 * self._target_rate:
                log.warning(
                    "asked for %.0f events/s but sending %.0f/s: this machine's producer is the limit",
                    self._target_rate,
                    summary.rate,
                )
            self._warned_slow = True

    def final(self, summary: RunSummary) -> None:
        print(summary.summary_line(), file=self._out, flush=True)


def send_events(
    producer: Any,
    topic: str,
    events: Iterator[LogEvent],
    pacer: Pacer,
    reporter: Reporter,
    *,
    stop: threading.Event,
    count: int | None = None,
    duration_s: float | None = None,
    anomalies_started: Counter[str] | None = None,
    flush_timeout_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> RunSummary:
    """Send ``events`` until one of: ``count`` sent, ``duration_s`` over, ``events`` exhausted, ``stop`` set.

    ``anomalies_started`` is the generator's live counter, shown in progress lines and the summary.
    """
    deliveries = Deliveries()
    summary = RunSummary(anomalies_started=anomalies_started if anomalies_started is not None else Counter())
    started = clock()
    deadline = started + duration_s if duration_s is not None else None
    summary.stopped_by = "stop request"
    try:
        while not stop.is_set():
            if count is not None and summary.sent >= count:
                summary.stopped_by = "count"
                break
            if deadline is not None and clock() >= deadline:
                summary.stopped_by = "duration"
                break
            limit = _MAX_BATCH if count is None else min(_MAX_BATCH, count - summary.sent)
            released = pacer.wait(limit)
            exhausted = False
            for _ in range(released):
                if stop.is_set():
                    break
                event = next(events, None)
                if event is None:
                    exhausted = True
                    break
                _send(producer, topic, event, deliveries, reporter)
                summary.sent += 1
                summary.labels[event.label] += 1
            summary.elapsed_s = clock() - started
            summary.failed = deliveries.failed
            reporter.tick(summary)
            if exhausted:
                summary.stopped_by = "end of input"
                break
    finally:
        # Also on an unexpected error: what was handed to the producer gets its chance to be delivered.
        with contextlib.suppress(KafkaTimeoutError):  # what is left is counted below as unconfirmed
            producer.flush(timeout=flush_timeout_s)
    summary.elapsed_s = clock() - started
    summary.delivered, summary.failed = deliveries.delivered, deliveries.failed
    summary.unconfirmed = summary.sent - summary.delivered - summary.failed
    if summary.unconfirmed:
        log.error("%d sends were not confirmed within the %.0fs flush timeout", summary.unconfirmed, flush_timeout_s)
    return summary


def _send(producer: Any, topic: str, event: LogEvent, deliveries: Deliveries, reporter: Reporter) -> None:
    value = event.to_json()
    try:
        future = producer.send(topic, key=event.key(), value=value)
    except KafkaError as exc:  # refused before it was queued, e.g. the send buffer stayed full too long
        deliveries.on_failed(event.label, exc)
        return
    future.add_callback(deliveries.on_delivered)
    future.add_errback(deliveries.on_failed, event.label)
    reporter.event_sent(value)
