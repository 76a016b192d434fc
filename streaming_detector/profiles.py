"""What normal traffic looks like, per service: the profile the simulator draws from and the models train on.

Latency is log-normal around each service's median (long right tail, never negative); the error
rate is a small Beta-distributed fraction (about 0.5% on average), as in a healthy service.
``ORIGINAL`` keeps the original design's distributions: latency N(200, 50) and error rate U[0, 1].

The kinds of trouble injected on top of it (their labels and magnitudes) are here too, so the simulator and
the evaluation's scenarios inject the same thing under the same name.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from eventbus import LABEL_NORMAL, LogEvent

DEFAULT_SERVICES = ("auth", "payment", "orders")


@dataclass(frozen=True)
class NormalProfile:
    """Distribution of one service's healthy traffic."""

    latency_median_ms: float = 200.0
    latency_sigma: float = 0.25  # of log(latency): p99 is about 1.8x the median
    error_alpha: float = 2.0
    error_beta: float = 398.0  # Beta(2, 398): mean error rate 0.5%
    original: bool = False  # the original design's N(200, 50) latency and U[0, 1] error rate

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` latencies (ms) and error rates."""
        if self.original:
            latency = np.maximum(rng.normal(200.0, 50.0, n), 0.0)
            error = rng.uniform(0.0, 1.0, n)
        else:
            latency = self.latency_median_ms * np.exp(rng.normal(0.0, self.latency_sigma, n))
            error = rng.beta(self.error_alpha, self.error_beta, n)
        return latency, error


REALISTIC = NormalProfile()
ORIGINAL = NormalProfile(original=True)

# Injected anomalies: the label each touched event carries, and the range its magnitude is drawn from.
LATENCY_SPIKE = "latency_spike"
ERROR_BURST = "error_burst"
LEVEL_SHIFT = "level_shift"
SLOW_DRIFT = "slow_drift"
SPIKE_LATENCY_FACTOR = (4.0, 10.0)  # latency x this for a few events
BURST_ERROR_RATE = (0.2, 0.8)  # error rate drawn from this for a few events
SHIFT_LATENCY_FACTOR = (1.6, 2.5)  # latency x this for tens to hundreds of events
SHIFT_ERROR_RATE_RISE = (0.05, 0.2)  # error rate + this, the other shape of a level shift
DRIFT_LATENCY_FACTOR = (2.0, 3.0)  # latency creeps up to x this and stays


def generate_normal_events(
    count: int,
    *,
    services: Sequence[str] = DEFAULT_SERVICES,
    seed: int = 0,
    profile: NormalProfile = REALISTIC,
    start: datetime | None = None,
    interval_s: float = 0.01,
) -> list[LogEvent]:
    """``count`` healthy events spread round-robin over ``services``, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    latency, error = profile.draw(rng, count)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    return [
        LogEvent(
            event_id=str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i)),
            timestamp=(start + timedelta(seconds=i * interval_s)).isoformat(),
            service=services[i % len(services)],
            latency_ms=round(float(latency[i]), 3),
            error_rate=round(float(error[i]), 5),
            label=LABEL_NORMAL,
        )
        for i in range(count)
    ]
