"""Labelled rhythm scenarios: one service whose normal follows the clock, at a given event rate.

Real service metrics rise by day and fall by night, run a batch job every night, differ on weekends, and
change for good after a deploy. Each scenario here is one service's stream over several days, timed by its
events' ``event_time``, at one event every ``interval`` seconds (1 s and 300 s in ``make eval``): the
detector must be quiet on the rhythm and catch the labelled incidents, whatever the rate.

Shapes (log latency; noise is log-normal, sigma 0.2, errors about 1%):

* ``daily_cycle``: the level follows the hour of day, busiest at 14:00 and 2.7x quieter at 02:00;
* ``nightly_job``: a flat service whose latency triples for 20 minutes at about 02:00 (jitter ±5 min) every night;
* ``weekly_pattern``: the daily cycle, a third lower on Saturdays and Sundays, plus a Monday 08:00 report job;
* ``deploy_shift``: the daily cycle, then a deploy on day 3 at 11:00 makes it 1.8x slower for good (its first
  hour is labelled: one alert then is right, any later one false);
* ``busy_hour_incident`` / ``quiet_hour_incident``: the daily cycle, and on days 3 and 5 latency is 2.5x for 30
  minutes from 14:00 (busy) or 03:00 (quiet: still below the busy hour's normal level).

The streams start on a Monday at 00:00 UTC. The detector needs ``LEARNING_DAYS`` days of a rhythm before it
is routine (what recurs at an hour on two earlier days, or on two earlier same weekdays); false alerts are
reported over the whole stream and after that learning period.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from evaluation.quality import AlertQuality

DAY = 86_400.0
ORIGIN = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday
RHYTHM_NAMES = (
    "daily_cycle",
    "nightly_job",
    "weekly_pattern",
    "deploy_shift",
    "busy_hour_incident",
    "quiet_hour_incident",
)
RATES = {"1/s": 1.0, "1/5min": 300.0}  # label -> seconds between events
MEDIAN_MS = 200.0


class RhythmEvent(NamedTuple):
    """An event as the scorer reads it (``streaming_detector.scorer.Event``)."""

    event_id: str
    service: str
    latency_ms: float
    error_rate: float
    event_time: float | None


@dataclass(frozen=True)
class Window:
    """A labelled incident: events ``start`` .. ``stop - 1`` of the stream."""

    kind: str
    start: int
    stop: int


@dataclass(frozen=True)
class Rhythm:
    name: str
    interval: float  # seconds between events
    days: float
    learning_days: float  # after this, the rhythm is routine: false alerts are counted apart from here on
    times: np.ndarray  # epoch seconds
    latency_ms: np.ndarray
    error_rate: np.ndarray
    incidents: tuple[Window, ...]

    def events(self) -> list[RhythmEvent]:
        return [
            RhythmEvent(str(i), self.name, latency, error, time)
            for i, (latency, error, time) in enumerate(
                zip(self.latency_ms.tolist(), self.error_rate.tolist(), self.times.tolist(), strict=True)
            )
        ]


def _daily(hours: np.ndarray) -> np.ndarray:
    """Log-level offset by hour of day: +0.5 at 14:00, -0.5 at 02:00."""
    return 0.5 * np.cos(2 * math.pi * (hours - 14.0) / 24.0)


def _window(times: np.ndarray, start: float, minutes: float) -> tuple[int, int]:
    first = int(np.searchsorted(times, start))
    return first, max(first + 1, int(np.searchsorted(times, start + 60.0 * minutes)))


def build_rhythm(name: str, interval: float, seed: int = 0, days: float | None = None) -> Rhythm:
    """The scenario ``name`` at one event every ``interval`` seconds, reproducible from ``seed``."""
    if name not in RHYTHM_NAMES:
        raise ValueError(f"unknown rhythm {name!r}; known: {', '.join(RHYTHM_NAMES)}")
    rng = np.random.default_rng([seed, RHYTHM_NAMES.index(name), int(interval)])
    weekly = name == "weekly_pattern"
    days = days if days is not None else 22.0 if weekly else 6.0
    learning = 15.0 if weekly else 2.0
    times = ORIGIN + interval * np.arange(int(days * DAY / interval), dtype=np.float64)
    since = times - ORIGIN
    day_index = np.floor(since / DAY)
    hours = (since % DAY) / 3600.0
    level = np.zeros(len(times)) if name == "nightly_job" else _daily(hours)
    errors = rng.beta(4.0, 396.0, len(times))
    incidents: list[Window] = []
    if name == "nightly_job":
        for day in range(int(math.ceil(days))):
            start = ORIGIN + day * DAY + 2 * 3600.0 + rng.uniform(-300.0, 300.0)
            first, stop = _window(times, start, 20.0)
            level[first:stop] += math.log(3.0)
            errors[first:stop] += 0.05
    if weekly:
        weekday = day_index % 7  # 0 = Monday
        level[weekday >= 5] -= 0.4
        for day in range(0, int(days), 7):
            first, stop = _window(times, ORIGIN + day * DAY + 8 * 3600.0, 30.0)
            level[first:stop] += math.log(2.5)
    if name == "deploy_shift":
        first, stop = _window(times, ORIGIN + 3 * DAY + 11 * 3600.0, 60.0)
        level[first:] += math.log(1.8)
        incidents.append(Window("deploy_shift", first, stop))
    if name in ("busy_hour_incident", "quiet_hour_incident"):
        hour = 14.0 if name == "busy_hour_incident" else 3.0
        for day in (3, 5):
            first, stop = _window(times, ORIGIN + day * DAY + hour * 3600.0, 30.0)
            level[first:stop] += math.log(2.5)
            incidents.append(Window(name.removesuffix("_incident"), first, stop))
    latency = MEDIAN_MS * np.exp(level + rng.normal(0.0, 0.2, len(times)))
    return Rhythm(
        name, interval, days, learning, times, np.round(latency, 3), np.clip(errors, 0.0, 1.0), tuple(incidents)
    )


@dataclass(frozen=True)
class RhythmMetrics(AlertQuality):
    name: str
    rate: str
    days: float
    events: int
    incidents: int
    detected: int
    alerts: int
    true_alerts: int
    false_alerts: int
    false_after_learning: int
    learning_days: float
    delays_s: tuple[float, ...]  # event time from an incident's start to its first alert

    @property
    def false_per_day(self) -> float:
        return self.false_alerts / self.days

    @property
    def false_per_day_learned(self) -> float:
        return self.false_after_learning / (self.days - self.learning_days)

    @property
    def mean_delay_s(self) -> float:
        return float(np.mean(self.delays_s)) if self.delays_s else float("nan")


def measure(rhythm: Rhythm, rate: str, anomaly: Sequence[bool] | np.ndarray) -> RhythmMetrics:
    """Alert-level metrics of one replayed rhythm from its per-event alerts."""
    alerts = np.asarray(anomaly, dtype=bool)
    labelled = np.zeros(len(alerts), dtype=bool)
    delays = []
    for incident in rhythm.incidents:
        labelled[incident.start : incident.stop] = True
        hits = np.flatnonzero(alerts[incident.start : incident.stop])
        if len(hits):
            delays.append(float(rhythm.times[incident.start + hits[0]] - rhythm.times[incident.start]))
    false = alerts & ~labelled
    learned = rhythm.times >= ORIGIN + rhythm.learning_days * DAY
    return RhythmMetrics(
        name=rhythm.name,
        rate=rate,
        days=rhythm.days,
        events=len(alerts),
        incidents=len(rhythm.incidents),
        detected=len(delays),
        alerts=int(alerts.sum()),
        true_alerts=int((alerts & labelled).sum()),
        false_alerts=int(false.sum()),
        false_after_learning=int((false & learned).sum()),
        learning_days=rhythm.learning_days,
        delays_s=tuple(delays),
    )
