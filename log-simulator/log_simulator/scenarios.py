"""The kinds of anomaly the simulator injects, and one injected anomaly (an episode) while it lasts.

An episode hits one service for a number of that service's consecutive events; every event it touches
carries the kind's name as its ``label``:

``latency_spike``  3-6 events, latency x4-10 (one factor per episode, on top of normal jitter)
``error_burst``    3-8 events, error rate drawn from U[0.2, 0.8] for each event
``level_shift``    30-300 events, latency x1.6-2.5 and/or error rate +0.05-0.2 (a bad deploy, a slow dependency)

``weight`` is how often a kind is picked relative to the others: level shifts are long, so they are
picked less often to keep the share of anomalous events near a few times the anomaly rate.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass

from log_simulator.errors import ConfigurationError
from streaming_detector.profiles import (
    BURST_ERROR_RATE,
    ERROR_BURST,
    LATENCY_SPIKE,
    LEVEL_SHIFT,
    SHIFT_ERROR_RATE_RISE,
    SHIFT_LATENCY_FACTOR,
    SPIKE_LATENCY_FACTOR,
)


@dataclass(frozen=True)
class AnomalyKind:
    """One kind of injected anomaly: its label, how long it lasts and how often it is picked."""

    name: str
    description: str
    min_events: int
    max_events: int
    weight: float

    def start(self, rng: random.Random) -> "Episode":
        """A new episode of this kind with its magnitude drawn from ``rng``."""
        length = rng.randint(self.min_events, self.max_events)
        if self.name == LATENCY_SPIKE:
            return Episode(self.name, length, latency_factor=rng.uniform(*SPIKE_LATENCY_FACTOR))
        if self.name == ERROR_BURST:
            return Episode(self.name, length, error_range=BURST_ERROR_RATE)
        if self.name == LEVEL_SHIFT:
            shape = rng.choice(("latency", "error", "both"))
            factor = rng.uniform(*SHIFT_LATENCY_FACTOR) if shape != "error" else 1.0
            shift = rng.uniform(*SHIFT_ERROR_RATE_RISE) if shape != "latency" else 0.0
            return Episode(self.name, length, latency_factor=factor, error_shift=shift)
        raise AssertionError(f"no episode recipe for {self.name}")


KINDS: dict[str, AnomalyKind] = {
    kind.name: kind
    for kind in (
        AnomalyKind(LATENCY_SPIKE, "latency x4-10 for a few consecutive events", 3, 6, weight=1.0),
        AnomalyKind(ERROR_BURST, "error rate 0.2-0.8 for a few consecutive events", 3, 8, weight=1.0),
        AnomalyKind(
            LEVEL_SHIFT, "latency x1.6-2.5 and/or error rate +0.05-0.2 for tens to hundreds of events", 30, 300, 0.15
        ),
    )
}
ALL_KINDS: tuple[str, ...] = tuple(KINDS)
ALIASES = {"spike": LATENCY_SPIKE, "latency": LATENCY_SPIKE, "burst": ERROR_BURST, "errors": ERROR_BURST}


def resolve_kinds(names: Iterable[str]) -> tuple[str, ...]:
    """Canonical kind names for user-given ones (``spike`` means ``latency_spike``), in order, without repeats."""
    resolved: list[str] = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in KINDS:
            known = ", ".join([*KINDS, *ALIASES])
            raise ConfigurationError(f"unknown anomaly kind {raw.strip()!r}; known kinds: {known}")
        if name not in resolved:
            resolved.append(name)
    return tuple(resolved)


@dataclass
class Episode:
    """An injected anomaly in progress on one service; ``remaining`` counts the events it still touches."""

    label: str
    remaining: int
    latency_factor: float = 1.0
    error_shift: float = 0.0
    error_range: tuple[float, float] | None = None

    def apply(self, latency_ms: float, error_rate: float, rng: random.Random) -> tuple[float, float]:
        """The anomalous latency and error rate for a normal draw; uses up one event of the episode."""
        self.remaining -= 1
        latency_ms *= self.latency_factor
        if self.error_range is not None:
            error_rate = rng.uniform(*self.error_range)
        error_rate = min(1.0, error_rate + self.error_shift)
        return latency_ms, error_rate
