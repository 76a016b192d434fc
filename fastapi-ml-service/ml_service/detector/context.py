"""Per-service streaming state and the context vector computed from it.

The vector has two parts:

* ``FEATURES``: scale-free deviations in the service's own spread (log-latency baselines with capped
  learning, so an incident does not become the normal). The IsolationForest scores these. They assume the
  shape of normal latency (log-normal noise around a level), which is right for a young service.
* ``surprise`` and ``history_weight``: the service's OWN history speaking. A few raw signals (distance from
  the long-term level, step size, shift of the recent mean, error excess) are each ranked against that
  signal's last ``history`` values: the tail surprisal ``-log P(signal >= s)`` in nats, exact in the bulk and
  an exponential tail (fitted to the top 10%) beyond it; ``surprise`` is the largest. This is what makes
  one threshold fit a CPU percentage, a tweet count and a 20 ms service. ``history_weight`` says how much
  that history is trusted: 0 for a new service, rising to ``history_weight_max`` as events accumulate.

The service side (``ContextModel``) blends the forest's verdict with ``surprise`` by ``history_weight``.
"""

import bisect
import math
from collections import deque
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
HISTORY_FEATURES = (
    "surprise",  # largest tail surprisal (nats) of the calibrated signals against the service's own history
    "history_weight",  # how far the blend trusts ``surprise`` over the forest: 0 (new service) .. max
)
CONTEXT_FEATURES = (*FEATURES, *HISTORY_FEATURES)  # the vector the processor sends: the forest's, then the history's
N_SIGNALS = 4  # calibrated signals: level distance, step size, recent-mean shift, error excess


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
    # The calibrated signals (raw values; the calibration takes care of scale and shape).
    surprise_alpha: float = 0.001  # EWMA weight of their long-term level and spreads (exact mean while fewer)
    surprise_window: int = 10  # recent events behind the recent-mean shift
    history: int = 500  # past values of each signal its calibration ranks against
    # Every this many events a service's signals join its history (so 500 values span its last 1,000 events):
    # half the cost in the processor's hot loop, for 0.5 NAB point and no scenario F1 measured.
    history_every: int = 2
    min_history: int = 20  # calibration needs this many past values (else surprisal 0)
    tail_quantile: float = 0.9  # beyond this quantile of the history, an exponential tail is extrapolated
    max_tail: float = 20.0  # tail term when the history's top is flat (any excess is unprecedented)
    # history_weight = max * n / (n + events): a young service is judged by the forest; a mature one half
    # by the forest, half by its own history (measured: more than half lets repeated incidents in a long
    # history hide the next one; less loses the real-data benefit).
    history_weight_max: float = 0.5
    # Half of the maximum after this many events: slower than 300, the forest keeps more say while the
    # history is short (scenario F1 over 16 seeds 0.952 -> 0.965, NAB 54.6 -> 53.0).
    history_weight_events: float = 800.0


class SignalCalibration:
    """One signal's last ``history`` values, in arrival order and sorted (``ServiceHistory.surprise`` ranks
    new values against them and learns them)."""

    __slots__ = ("recent", "ordered")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.recent: deque[float] = deque(values)
        self.ordered: list[float] = sorted(self.recent)


class ServiceHistory:
    """The calibrated-signal state of one service: raw long-term moments, recent values, calibrations."""

    __slots__ = ("count", "mean", "var", "step_var", "error_mean", "error_var", "recent", "calibrations")

    def __init__(self, window: int) -> None:
        self.count = 0
        self.mean = self.var = self.step_var = self.error_mean = self.error_var = 0.0
        self.recent: deque[float] = deque(maxlen=max(1, window - 1))  # the recent mean adds the event itself
        self.calibrations = [SignalCalibration() for _ in range(N_SIGNALS)]

    def surprise(self, y: float, e: float, cfg: ContextConfig) -> float:
        """The largest calibrated surprisal of this event (0.0 while too young), then learn it."""
        count = self.count
        best = 0.0
        recent = self.recent
        if count >= 2:
            mean = self.mean
            tiny = 1e-9 * (abs(mean) + 1.0)
            spread = math.sqrt(self.var) + tiny
            step = y - recent[-1]
            shifted = (sum(recent) + y) / (len(recent) + 1)
            signals = (
                abs(y - mean) / spread,
                abs(step) / (math.sqrt(self.step_var) + tiny),
                abs(shifted - mean) / spread,
                max(e - self.error_mean, 0.0) / math.sqrt(self.error_var + cfg.error_floor**2),
            )
            # Per signal: -log P(signal >= value) in nats, the exact rank in the bulk and an exponential tail (scale:
            # the mean excess over the 90% quantile) beyond it; then the signal joins the history. One loop for all
            # signals, as this runs for every event in the processor. Every calibration holds as many values, so
            # the largest bulk surprisal is that of the highest rank.
            history, min_history, quantile, max_tail = cfg.history, cfg.min_history, cfg.tail_quantile, cfg.max_tail
            learn = count % cfg.history_every == 0
            log, bisect_left = math.log, bisect.bisect_left
            highest = 0
            size = len(self.calibrations[0].ordered)
            k = int(quantile * size)
            for calibration, signal in zip(self.calibrations, signals, strict=True):
                ordered = calibration.ordered
                position = -1
                if size >= min_history:
                    start = ordered[k]
                    if signal > start:
                        tail = size - k
                        excess = sum(ordered[k:]) / tail - start
                        value = log(size / tail) + ((signal - start) / excess if excess > 0.0 else max_tail)
                        if value > best:
                            best = value
                    else:
                        position = bisect_left(ordered, signal)
                        if position > highest:
                            highest = position
                if not learn:
                    continue
                ordered.insert(bisect_left(ordered, signal) if position < 0 else position, signal)
                past = calibration.recent
                past.append(signal)
                if size >= history:
                    del ordered[bisect_left(ordered, past.popleft())]
            if best == 0.0 and size >= min_history:
                best = log((size + 1) / (size - highest + 1))
        self._learn(y, e, cfg.surprise_alpha)
        return best

    def _learn(self, y: float, e: float, long_alpha: float) -> None:
        """Exact running moments while young, exponentially weighted (time constant 1/long_alpha) after."""
        count = self.count = self.count + 1
        if count == 1:
            self.mean, self.error_mean = y, e
            self.recent.append(y)
            return
        alpha = max(1.0 / count, long_alpha)
        delta = y - self.mean
        self.mean += alpha * delta
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)
        step = y - self.recent[-1]
        self.step_var = step * step if count == 2 else (1.0 - alpha) * self.step_var + alpha * step * step
        e_delta = e - self.error_mean
        self.error_mean += alpha * e_delta
        self.error_var = (1.0 - alpha) * (self.error_var + alpha * e_delta * e_delta)
        self.recent.append(y)

    def state(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in ("count", "mean", "var", "step_var", "error_mean", "error_var")},
            "recent": list(self.recent),
            "history": [list(c.recent) for c in self.calibrations],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], window: int) -> "ServiceHistory":
        history = cls(window)
        history.count = int(state["count"])
        for name in ("mean", "var", "step_var", "error_mean", "error_var"):
            setattr(history, name, float(state[name]))
        history.recent.extend(float(v) for v in state["recent"])
        history.calibrations = [SignalCalibration(float(v) for v in values) for values in state["history"]]
        return history


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
        "history",
    )
    _NUMBERS = __slots__[:-1]

    def __init__(self, window: int = 10) -> None:
        self.count = 0
        self.slow_mean = self.slow_var = self.fast_mean = self.fast_var = 0.0
        self.medium_mean = self.long_mean = self.last = self.step_var = 0.0
        self.error_mean = self.error_var = 0.0
        self.history = ServiceHistory(window)

    def state(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in self._NUMBERS}, "history": self.history.state()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], window: int = 10) -> "ServiceContext":
        context = cls(window)
        for name in cls._NUMBERS:
            setattr(context, name, type(getattr(context, name))(state[name]))
        context.history = ServiceHistory.from_state(state["history"], window)
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
        """``(context (n, len(CONTEXT_FEATURES)), warm (n,) bool)`` for events given column-wise, in stream order."""
        cfg = self.config
        raw = np.fromiter(latency_ms, dtype=np.float64)
        values = transform(raw, cfg).tolist()
        raw_values = raw.tolist()
        errors = np.fromiter(error_rate, dtype=np.float64).tolist()
        n = len(values)
        width = len(CONTEXT_FEATURES)
        rows = np.zeros((n, width), dtype=np.float64).tolist()
        weight_max, weight_events = cfg.history_weight_max, cfg.history_weight_events
        warm = [False] * n
        a_f, a_s, a_m, a_l = cfg.fast_alpha, cfg.slow_alpha, cfg.medium_alpha, cfg.long_alpha
        clip, warmup, err_floor_sq = cfg.clip_sigmas, cfg.warmup_events, cfg.error_floor**2
        contexts = self.services
        sqrt, log = math.sqrt, math.log
        for i in range(n):
            name = services[i]
            ctx = contexts.get(name)
            if ctx is None:
                ctx = contexts[name] = ServiceContext(cfg.surprise_window)
            y = values[i]
            e = errors[i]
            count = ctx.count
            surprise = ctx.history.surprise(raw_values[i], e, cfg)
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
            row[6] = surprise
            row[7] = weight_max * count / (count + weight_events)
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
        return np.array(rows, dtype=np.float64).reshape(n, width), np.array(warm, dtype=bool)

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot of every service's state and the configuration."""
        return {"config": asdict(self.config), "services": {k: v.state() for k, v in self.services.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.config = ContextConfig(**state["config"])
        window = self.config.surprise_window
        self.services = {name: ServiceContext.from_state(s, window) for name, s in state["services"].items()}


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
