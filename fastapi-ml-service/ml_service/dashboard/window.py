"""A bounded, per-second view of the last few minutes of verdicts, shared by every dashboard client.

Verdicts are folded into one bucket per (service, second) as they arrive, so memory depends on the
number of services and the window length, never on the event rate. Every change is stamped with a
revision number: a client that saw revision ``r`` asks for ``delta(r)`` and gets only what changed.
Time is the Kafka record timestamp (when the verdict was produced), in seconds since the epoch.
"""

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eventbus import Verdict

# Records stamped this far in the future (clock skew) are still accepted; beyond it they are dropped.
FUTURE_TOLERANCE_S = 60
# events/s is averaged over this many whole seconds, ending before the current partial second.
RATE_SECONDS = 5


@dataclass(slots=True)
class Bucket:
    """What one service did in one second; the anomaly fields describe its highest-scoring anomaly."""

    count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    error_sum: float = 0.0
    anomalies: int = 0
    anomaly_score: float = 0.0
    anomaly_latency: float = 0.0
    anomaly_error: float = 0.0
    anomaly_event_id: str = ""
    anomaly_signal: str | None = None
    rev: int = 0

    def add(self, verdict: Verdict) -> None:
        self.count += 1
        self.latency_sum += verdict.latency_ms
        self.latency_max = max(self.latency_max, verdict.latency_ms)
        self.error_sum += verdict.error_rate
        if verdict.anomaly:
            if self.anomalies == 0 or verdict.score > self.anomaly_score:
                self.anomaly_score = verdict.score
                self.anomaly_latency = verdict.latency_ms
                self.anomaly_error = verdict.error_rate
                self.anomaly_event_id = verdict.event_id
                self.anomaly_signal = triggering_signal(verdict)
            self.anomalies += 1

    def row(self, second: int) -> list[Any]:
        """``[t, count, mean_latency, max_latency, mean_error, anomalies, anomaly_latency, anomaly_error,
        anomaly_score, anomaly_event_id, anomaly_signal]``: the compact form sent to the page (``SERIES_FIELDS``)."""
        return [
            second,
            self.count,
            round(self.latency_sum / self.count, 3),
            round(self.latency_max, 3),
            round(self.error_sum / self.count, 6),
            self.anomalies,
            round(self.anomaly_latency, 3) if self.anomalies else None,
            round(self.anomaly_error, 6) if self.anomalies else None,
            round(self.anomaly_score, 6) if self.anomalies else None,
            self.anomaly_event_id or None,
            self.anomaly_signal if self.anomalies else None,
        ]


SERIES_FIELDS = [
    "t",
    "count",
    "mean_latency_ms",
    "max_latency_ms",
    "mean_error_rate",
    "anomalies",
    "anomaly_latency_ms",
    "anomaly_error_rate",
    "anomaly_score",
    "anomaly_event_id",
    "anomaly_signal",
]


def triggering_signal(verdict: Verdict) -> str | None:
    """The signal a verdict's ``explanation`` names as the driver, when it carries one (else the page decides)."""
    explanation = getattr(verdict, "explanation", None)
    signal = explanation.get("signal") if isinstance(explanation, dict) else getattr(explanation, "signal", None)
    return signal if isinstance(signal, str) else None


class LiveWindow:
    """Thread-safe: the Kafka feed thread writes, the web server's clients read."""

    def __init__(
        self,
        window_s: int = 300,
        max_anomalies: int = 50,
        max_services: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self.max_services = max_services
        self._clock = clock
        self._lock = threading.Lock()
        self._rev = 0
        self._services: dict[str, dict[int, Bucket]] = {}
        # Per second across services: [events, anomalies]; keeps the counters cheap to read.
        self._totals: dict[int, list[int]] = {}
        self._dead_lettered: dict[int, int] = {}
        self._anomalies: deque[dict[str, Any]] = deque(maxlen=max_anomalies)
        self.dropped = {"unreadable": 0, "out_of_window": 0, "too_many_services": 0}
        self.dead_lettered_total: int | None = None
        self.consumer_lag: int | None = None

    # --- writing (feed thread) ---------------------------------------------------------------

    def add_verdicts(self, stamped: Iterable[tuple[float, Verdict]]) -> int:
        """Fold ``(record time in s, verdict)`` pairs in; return how many were kept."""
        now = self._clock()
        oldest, newest = now - self.window_s, now + FUTURE_TOLERANCE_S
        kept = 0
        with self._lock:
            self._rev += 1
            for stamp, verdict in stamped:
                if not oldest <= stamp <= newest:
                    self.dropped["out_of_window"] += 1
                    continue
                buckets = self._services.get(verdict.service)
                if buckets is None:
                    if len(self._services) >= self.max_services:
                        self.dropped["too_many_services"] += 1
                        continue
                    buckets = self._services[verdict.service] = {}
                second = int(stamp)
                bucket = buckets.get(second)
                if bucket is None:
                    bucket = buckets[second] = Bucket()
                bucket.add(verdict)
                bucket.rev = self._rev
                totals = self._totals.get(second)
                if totals is None:
                    totals = self._totals[second] = [0, 0]
                totals[0] += 1
                if verdict.anomaly:
                    totals[1] += 1
                    self._anomalies.append(_anomaly_entry(stamp, verdict, self._rev))
                kept += 1
        return kept

    def count_unreadable(self, count: int = 1) -> None:
        with self._lock:
            self.dropped["unreadable"] += count

    def add_dead_lettered(self, stamps: Iterable[float]) -> None:
        now = self._clock()
        with self._lock:
            self._rev += 1
            for stamp in stamps:
                if now - self.window_s <= stamp <= now + FUTURE_TOLERANCE_S:
                    second = int(stamp)
                    self._dead_lettered[second] = self._dead_lettered.get(second, 0) + 1

    def set_broker_figures(self, consumer_lag: int | None, dead_lettered_total: int | None) -> None:
        with self._lock:
            self.consumer_lag = consumer_lag
            self.dead_lettered_total = dead_lettered_total

    def prune(self) -> None:
        """Forget the seconds that slid out of the window (and services with none left)."""
        cutoff = int(self._clock()) - self.window_s
        with self._lock:
            for service in list(self._services):
                buckets = self._services[service]
                for second in [s for s in buckets if s < cutoff]:
                    del buckets[second]
                if not buckets:
                    del self._services[service]
            for second in [s for s in self._dead_lettered if s < cutoff]:
                del self._dead_lettered[second]
            for second in [s for s in self._totals if s < cutoff]:
                del self._totals[second]

    def clear(self) -> None:
        """Start again from nothing (the feed re-reads the window when it restarts)."""
        with self._lock:
            self._rev += 1
            self._services.clear()
            self._totals.clear()
            self._dead_lettered.clear()
            self._anomalies.clear()
            self.consumer_lag = None
            self.dead_lettered_total = None
            for key in self.dropped:
                self.dropped[key] = 0

    # --- reading (web clients) ---------------------------------------------------------------

    @property
    def rev(self) -> int:
        return self._rev

    def bucket_count(self) -> int:
        """Per-second entries held (service buckets, dead-letter and total counts): what memory grows with."""
        with self._lock:
            return sum(len(b) for b in self._services.values()) + len(self._dead_lettered) + len(self._totals)

    def snapshot(self) -> dict[str, Any]:
        """Everything in the window: what a client draws first."""
        return self._view(since_rev=0, kind="snapshot")

    def delta(self, since_rev: int) -> dict[str, Any]:
        """Buckets and anomalies changed after ``since_rev``, plus the current counters."""
        return self._view(since_rev=since_rev, kind="update")

    def _view(self, since_rev: int, kind: str) -> dict[str, Any]:
        now = self._clock()
        cutoff = int(now) - self.window_s
        with self._lock:
            series = {}
            for service, buckets in self._services.items():
                changed = sorted((s, b) for s, b in buckets.items() if b.rev > since_rev and s >= cutoff)
                rows = [b.row(s) for s, b in changed]
                if rows or since_rev == 0:
                    series[service] = rows
            anomalies = [a for a in reversed(self._anomalies) if a["rev"] > since_rev]
            counters = self._counters(now, cutoff)
            rev = self._rev
        return {
            "type": kind,
            "rev": rev,
            "now": round(now, 3),
            "window_s": self.window_s,
            "fields": SERIES_FIELDS,
            "series": series,
            "anomalies": anomalies,
            "counters": counters,
        }

    def _counters(self, now: float, cutoff: int) -> dict[str, Any]:
        last_whole = int(now) - 1
        recent = range(last_whole - RATE_SECONDS + 1, last_whole + 1)
        events = anomalies = 0
        for second, (count, anomalous) in self._totals.items():
            if second >= cutoff:
                events += count
                anomalies += anomalous
        recent_events = sum(self._totals[s][0] for s in recent if s in self._totals)
        return {
            "events_per_s": round(recent_events / RATE_SECONDS, 1),
            "events_in_window": events,
            "anomalies_in_window": anomalies,
            "anomaly_rate": round(anomalies / events, 6) if events else None,
            "dead_lettered_in_window": sum(n for s, n in self._dead_lettered.items() if s >= cutoff),
            "dead_lettered_total": self.dead_lettered_total,
            "consumer_lag": self.consumer_lag,
            "services": len(self._services),
            "dropped": dict(self.dropped),
        }


def _anomaly_entry(stamp: float, verdict: Verdict, rev: int) -> dict[str, Any]:
    return {
        "rev": rev,
        "t": round(stamp, 3),
        "timestamp": verdict.timestamp,
        "event_time": verdict.event_time,
        "event_id": verdict.event_id,
        "service": verdict.service,
        "latency_ms": verdict.latency_ms,
        "error_rate": verdict.error_rate,
        "score": round(verdict.score, 6),
        # The one scale people see (1 = the alert threshold, whichever model scored), and why.
        "severity": verdict.explanation.severity if verdict.explanation else None,
        "why": verdict.explanation.text if verdict.explanation else None,
        "incident_id": verdict.incident_id,
        "label": verdict.label,
        "model_version": verdict.model_version,
        "signal": triggering_signal(verdict),
    }
