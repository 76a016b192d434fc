"""Per-service streaming state and the scale-free context features computed from it."""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FEATURES = (
    "level_z",  # this event's deviation from the service's baseline, in the service's own spread
    "recent_level_z",  # the recent level (fast average, this event included) against the baseline
    "drift_z",  # the medium-term level against the long-term level: slow creep
    "change_z",  # rate of change: this event minus the previous one, in units of typical step size
    "volatility_log_ratio",  # recent spread against the baseline spread (noise bursts, flatlines)
    "error_excess",  # error rate above the service's own usual error rate
)


@dataclass(frozen=True)
class ContextConfig:
    """How the per-service state learns; one configuration for every service (saved with the model)."""

    warmup_events: int = 30  # events a new service needs before its features are trusted
    fast_alpha: float = 0.2  # EWMA weight of the recent level (time constant ~5 events)
    # EWMA weight of the baseline (~100 events): slow enough that a 60-150 event incident is not yet the new
    # normal when it ends, so the return to normal is no surprise; a lasting shift is absorbed in a few hundred.
    slow_alpha: float = 0.01
    medium_alpha: float = 0.05  # EWMA weight of the medium-term level used for drift
    long_alpha: float = 0.002  # EWMA weight of the long-term level (~500 events)
    clip_sigmas: float = 4.0  # an outlier moves the baseline as if it were this many spreads away
    error_floor: float = 0.01  # smallest error-rate spread: below 1 point, error changes are noise
    log_values: bool = True  # learn on sign(x)·log1p(|x|): multiplicative changes weigh the same at 20 ms and 2 s


class ServiceContext:
    """One service's online state; ``update`` learns one event (river's ``learn_one``)."""

    __slots__ = (
        "count",
        "slow_mean",
        "slow_var",
        "fast_mean",
        "fast_var",
        "medium_mean",
        "long_mean",
        "last",
        "step_var",
        "error_mean",
        "error_var",
    )

    def __init__(self) -> None:
        self.count = 0
        self.slow_mean = self.slow_var = self.fast_mean = self.fast_var = 0.0
        self.medium_mean = self.long_mean = self.last = self.step_var = 0.0
        self.error_mean = self.error_var = 0.0

    def state(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_state(cls, state: Mapping[str, float]) -> "ServiceContext":
        context = cls()
        for name in cls.__slots__:
            setattr(context, name, type(getattr(context, name))(state[name]))
        return context


def transform(values: np.ndarray, config: ContextConfig) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.log1p(np.abs(values)) if config.log_values else values


class ContextTracker:
    """Every service's ``ServiceContext``; ``features`` scores events in their service's context, then learns them.

    For each event, in order: its features come from the state BEFORE it (plus the event itself),
    then the state learns it. A service's first ``warmup_events`` events get ``warm=False``.
    """

    def __init__(self, config: ContextConfig | None = None) -> None:
        self.config = config or ContextConfig()
        self.services: dict[str, ServiceContext] = {}

    def features(
        self, services: Sequence[str], latency_ms: Iterable[float], error_rate: Iterable[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(features (n, len(FEATURES)), warm (n,) bool)`` for events given column-wise, in stream order."""
        cfg = self.config
        values = transform(np.fromiter(latency_ms, dtype=np.float64), cfg).tolist()
        errors = np.fromiter(error_rate, dtype=np.float64).tolist()
        n = len(values)
        out = np.zeros((n, len(FEATURES)), dtype=np.float64)
        rows = out.tolist()
        warm = [False] * n
        a_f, a_s, a_m, a_l = cfg.fast_alpha, cfg.slow_alpha, cfg.medium_alpha, cfg.long_alpha
        clip, warmup, err_floor_sq = cfg.clip_sigmas, cfg.warmup_events, cfg.error_floor**2
        contexts = self.services
        sqrt, log = math.sqrt, math.log
        for i in range(n):
            name = services[i]
            ctx = contexts.get(name)
            if ctx is None:
                ctx = contexts[name] = ServiceContext()
            y = values[i]
            e = errors[i]
            count = ctx.count
            if count < warmup:
                _learn_warmup(ctx, y, e)
                continue
            slow_mean = ctx.slow_mean
            slow_var = ctx.slow_var
            sd = sqrt(slow_var) + 1e-9 * (abs(slow_mean) + 1.0)
            dev = y - slow_mean
            fast_mean = ctx.fast_mean + a_f * (y - ctx.fast_mean)
            medium_mean = ctx.medium_mean + a_m * (y - ctx.medium_mean)
            step = y - ctx.last
            step_sd = sqrt(ctx.step_var) + 1e-9 * (abs(slow_mean) + 1.0)
            fdev = y - ctx.fast_mean
            fast_var = (1.0 - a_f) * (ctx.fast_var + a_f * fdev * fdev)
            e_dev = e - ctx.error_mean
            row = rows[i]
            row[0] = dev / sd
            row[1] = (fast_mean - slow_mean) / sd
            row[2] = (medium_mean - ctx.long_mean) / sd
            row[3] = step / step_sd
            row[4] = log((fast_var + 1e-12 * sd) / (slow_var + 1e-12 * sd) + 1e-12)
            row[5] = e_dev / sqrt(ctx.error_var + err_floor_sq)
            warm[i] = True
            # Learn: an outlier pulls the baselines no further than ``clip`` spreads, so an incident
            # does not become the new normal at once, yet a lasting shift is absorbed in time.
            limit = clip * sd
            c = limit if dev > limit else -limit if dev < -limit else dev
            ctx.slow_mean = slow_mean + a_s * c
            ctx.slow_var = (1.0 - a_s) * (slow_var + a_s * c * c)
            ctx.fast_mean = fast_mean
            ctx.fast_var = fast_var
            ctx.medium_mean = medium_mean
            ctx.long_mean += a_l * (slow_mean + c - ctx.long_mean)
            step_limit = clip * step_sd
            cs = step_limit if step > step_limit else -step_limit if step < -step_limit else step
            ctx.step_var = (1.0 - a_s) * (ctx.step_var + a_s * cs * cs)
            ctx.last = y
            ctx.error_mean += a_s * e_dev
            ctx.error_var = (1.0 - a_s) * (ctx.error_var + a_s * e_dev * e_dev)
            ctx.count = count + 1
        return np.array(rows, dtype=np.float64).reshape(n, len(FEATURES)), np.array(warm, dtype=bool)

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot of every service's state and the configuration."""
        return {"config": asdict(self.config), "services": {k: v.state() for k, v in self.services.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.config = ContextConfig(**state["config"])
        self.services = {name: ServiceContext.from_state(s) for name, s in state["services"].items()}


def _learn_warmup(ctx: ServiceContext, y: float, e: float) -> None:
    """Exact running mean and variance (Welford) until the service has enough history for EWMAs."""
    count = ctx.count + 1
    if count == 1:
        ctx.slow_mean = ctx.fast_mean = ctx.medium_mean = ctx.long_mean = ctx.last = y
        ctx.error_mean = e
        ctx.count = 1
        return
    delta = y - ctx.slow_mean
    ctx.slow_mean += delta / count
    ctx.slow_var += (delta * (y - ctx.slow_mean) - ctx.slow_var) / count  # population variance
    step = y - ctx.last
    ctx.step_var += (step * step - ctx.step_var) / (count - 1)
    ctx.last = y
    e_delta = e - ctx.error_mean
    ctx.error_mean += e_delta / count
    ctx.error_var += (e_delta * (e - ctx.error_mean) - ctx.error_var) / count
    ctx.count = count
    ctx.fast_mean = ctx.medium_mean = ctx.long_mean = ctx.slow_mean
    ctx.fast_var = ctx.slow_var
