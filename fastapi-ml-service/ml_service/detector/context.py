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

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numba
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


# One service's numbers in ``ContextTracker``'s state, by column: the features' baselines, then the
# calibrated signals' raw long-term moments.
NUMBERS = (
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
    "raw_mean",
    "raw_var",
    "raw_step_var",
    "raw_error_mean",
    "raw_error_var",
)
(
    SLOW_MEAN,
    SLOW_VAR,
    FAST_MEAN,
    FAST_VAR,
    MEDIUM_MEAN,
    LONG_MEAN,
    LAST,
    STEP_VAR,
    ERROR_MEAN,
    ERROR_VAR,
    RAW_MEAN,
    RAW_VAR,
    RAW_STEP_VAR,
    RAW_ERROR_MEAN,
    RAW_ERROR_VAR,
) = range(len(NUMBERS))


def transform(values: np.ndarray, config: ContextConfig) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.log1p(np.abs(values)) if config.log_values else values


class ContextTracker:
    """Every service's online state; ``features`` scores events in their service's context, then learns them.

    For each event, in order: its features come from the state BEFORE it (plus the event itself),
    then the state learns it. A service's first ``warmup_events`` events get ``warm=False``.

    The state is a few arrays with one row per service (numbers, the recent raw values, and each calibrated
    signal's history in arrival order and sorted); the per-event loop is compiled (numba), as it runs for
    every event in the processor: about 2 µs an event instead of 10 µs in Python (the same numbers, bit for bit).
    """

    def __init__(self, config: ContextConfig | None = None) -> None:
        self.config = config or ContextConfig()
        self._allocate(8)

    def _allocate(self, capacity: int) -> None:
        cfg = self.config
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._counts = np.zeros(capacity, dtype=np.int64)  # events seen per service
        self._numbers = np.zeros((capacity, len(NUMBERS)), dtype=np.float64)
        self._recent = np.zeros((capacity, max(1, cfg.surprise_window - 1)), dtype=np.float64)  # ring, raw values
        self._learned = np.zeros(capacity, dtype=np.int64)  # values ever added to each signal's history
        self._arrival = np.zeros((capacity, N_SIGNALS, cfg.history), dtype=np.float64)  # ring
        self._ordered = np.zeros((capacity, N_SIGNALS, cfg.history + 1), dtype=np.float64)  # sorted, one spare

    def _add(self, name: str) -> int:
        slot = len(self.names)
        if slot == len(self._counts):
            grown = 2 * slot
            for attr in ("_counts", "_numbers", "_recent", "_learned", "_arrival", "_ordered"):
                old = getattr(self, attr)
                new = np.zeros((grown, *old.shape[1:]), dtype=old.dtype)
                new[:slot] = old
                setattr(self, attr, new)
        self.names.append(name)
        self._index[name] = slot
        return slot

    def features(
        self, services: Sequence[str], latency_ms: Iterable[float], error_rate: Iterable[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(context (n, len(CONTEXT_FEATURES)), warm (n,) bool)`` for events given column-wise, in stream order."""
        cfg = self.config
        get = self._index.get
        slots = [get(name) for name in services]
        if None in slots:
            slots = [self._index[name] if name in self._index else self._add(name) for name in services]
        ids = np.array(slots, dtype=np.int64)
        raw = np.fromiter(latency_ms, dtype=np.float64)
        errors = np.fromiter(error_rate, dtype=np.float64)
        n = len(ids)
        rows = np.zeros((n, len(CONTEXT_FEATURES)), dtype=np.float64)
        warm = np.zeros(n, dtype=np.bool_)
        _advance(
            ids, transform(raw, cfg), raw, errors, rows, warm,
            self._counts, self._numbers, self._recent, self._learned, self._arrival, self._ordered,
            cfg.warmup_events, cfg.fast_alpha, cfg.slow_alpha, cfg.medium_alpha, cfg.long_alpha, cfg.clip_sigmas,
            cfg.error_floor**2, cfg.history_weight_max, cfg.history_weight_events, cfg.surprise_alpha,
            cfg.history, cfg.history_every, cfg.min_history, cfg.tail_quantile, cfg.max_tail,
        )  # fmt: skip
        return rows, warm

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot of every service's state and the configuration."""
        return {
            "config": asdict(self.config),
            "services": {name: self._state(slot) for slot, name in enumerate(self.names)},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.config = ContextConfig(**state["config"])
        services = state["services"]
        self._allocate(max(8, len(services)))
        for name, service in services.items():
            slot = self._add(name)
            count = self._counts[slot] = int(service["count"])
            self._numbers[slot] = [float(service[column]) for column in NUMBERS]
            width = self._recent.shape[1]
            recent = [float(v) for v in service["recent"]][-width:]
            for j, value in enumerate(recent):  # event ``count - len(recent) + j`` sits at that index mod width
                self._recent[slot, (count - len(recent) + j) % width] = value
            history = [[float(v) for v in values][-self.config.history :] for values in service["history"]]
            learned = self._learned[slot] = int(service["learned"])
            for signal, values in enumerate(history):
                for j, value in enumerate(values):
                    self._arrival[slot, signal, (learned - len(values) + j) % self.config.history] = value
                self._ordered[slot, signal, : len(values)] = sorted(values)

    def _state(self, slot: int) -> dict[str, Any]:
        count, learned, history = int(self._counts[slot]), int(self._learned[slot]), self.config.history
        width = self._recent.shape[1]
        size = min(learned, history)
        return {
            "count": count,
            **dict(zip(NUMBERS, self._numbers[slot].tolist(), strict=True)),
            "recent": [float(self._recent[slot, j % width]) for j in range(count - min(count, width), count)],
            "learned": learned,
            "history": [
                [float(self._arrival[slot, signal, j % history]) for j in range(learned - size, learned)]
                for signal in range(N_SIGNALS)
            ],
        }


@numba.njit(cache=True, nogil=True)
def _advance(
    ids, values, raw, errors, rows, warm,
    counts, numbers, recent, learned, arrival, ordered,
    warmup, a_f, a_s, a_m, a_l, clip, err_floor_sq, weight_max, weight_events, surprise_alpha,
    history, history_every, min_history, quantile, max_tail,
):  # fmt: skip
    """Score then learn each event in order (``ContextTracker.features``): fills ``rows`` and ``warm``."""
    for i in range(ids.shape[0]):
        s = ids[i]
        ctx = numbers[s]
        y = values[i]
        e = errors[i]
        count = counts[s]
        surprise = _surprise(
            ctx, recent[s], learned, arrival[s], ordered[s], s, count, raw[i], e, err_floor_sq, surprise_alpha,
            history, history_every, min_history, quantile, max_tail,
        )  # fmt: skip
        counts[s] = count + 1
        if count < warmup:
            _learn_warmup(ctx, count + 1, y, e)
            continue
        slow_mean = ctx[SLOW_MEAN]
        slow_var = ctx[SLOW_VAR]
        sd = math.sqrt(slow_var) + 1e-9 * (abs(slow_mean) + 1.0)
        dev = y - slow_mean
        fast_mean = ctx[FAST_MEAN] + a_f * (y - ctx[FAST_MEAN])
        medium_mean = ctx[MEDIUM_MEAN] + a_m * (y - ctx[MEDIUM_MEAN])
        step = y - ctx[LAST]
        step_sd = math.sqrt(ctx[STEP_VAR]) + 1e-9 * (abs(slow_mean) + 1.0)
        fdev = y - ctx[FAST_MEAN]
        fast_var = (1.0 - a_f) * (ctx[FAST_VAR] + a_f * fdev * fdev)
        e_dev = e - ctx[ERROR_MEAN]
        row = rows[i]
        row[0] = dev / sd
        row[1] = (fast_mean - slow_mean) / sd
        row[2] = (medium_mean - ctx[LONG_MEAN]) / sd
        row[3] = step / step_sd
        row[4] = math.log((fast_var + 1e-12 * sd) / (slow_var + 1e-12 * sd) + 1e-12)
        row[5] = e_dev / math.sqrt(ctx[ERROR_VAR] + err_floor_sq)
        row[6] = surprise
        row[7] = weight_max * count / (count + weight_events)
        warm[i] = True
        # Learn: an outlier pulls the baselines no further than ``clip`` spreads, so an incident
        # does not become the new normal at once, yet a lasting shift is absorbed in time.
        limit = clip * sd
        c = limit if dev > limit else -limit if dev < -limit else dev
        ctx[SLOW_MEAN] = slow_mean + a_s * c
        ctx[SLOW_VAR] = (1.0 - a_s) * (slow_var + a_s * c * c)
        ctx[FAST_MEAN] = fast_mean
        ctx[FAST_VAR] = fast_var
        ctx[MEDIUM_MEAN] = medium_mean
        ctx[LONG_MEAN] += a_l * (slow_mean + c - ctx[LONG_MEAN])
        step_limit = clip * step_sd
        cs = step_limit if step > step_limit else -step_limit if step < -step_limit else step
        ctx[STEP_VAR] = (1.0 - a_s) * (ctx[STEP_VAR] + a_s * cs * cs)
        ctx[LAST] = y
        ctx[ERROR_MEAN] += a_s * e_dev
        ctx[ERROR_VAR] = (1.0 - a_s) * (ctx[ERROR_VAR] + a_s * e_dev * e_dev)


@numba.njit(cache=True, nogil=True)
def _surprise(
    ctx, recent, learned, arrival, ordered, s, count, y, e, err_floor_sq, long_alpha,
    history, history_every, min_history, quantile, max_tail,
):  # fmt: skip
    """The largest calibrated surprisal of this raw event (0.0 while too young), then learn it.

    Per signal: -log P(signal >= value) in nats, the exact rank in the bulk and an exponential tail (scale:
    the mean excess over the 90% quantile) beyond it; then, every ``history_every`` events, the signal joins
    its history (the oldest value leaves once there are ``history``). Every signal's history holds as many
    values, so the largest bulk surprisal is that of the highest rank.
    """
    width = recent.shape[0]
    best = 0.0
    if count >= 2:
        mean = ctx[RAW_MEAN]
        tiny = 1e-9 * (abs(mean) + 1.0)
        spread = math.sqrt(ctx[RAW_VAR]) + tiny
        kept = min(count, width)
        total = 0.0
        for j in range(count - kept, count):
            total += recent[j % width]
        step = y - recent[(count - 1) % width]
        shifted = (total + y) / (kept + 1)
        signals = (
            abs(y - mean) / spread,
            abs(step) / (math.sqrt(ctx[RAW_STEP_VAR]) + tiny),
            abs(shifted - mean) / spread,
            max(e - ctx[RAW_ERROR_MEAN], 0.0) / math.sqrt(ctx[RAW_ERROR_VAR] + err_floor_sq),
        )
        learn = count % history_every == 0
        done = learned[s]
        size = min(done, history)
        k = int(quantile * size)
        highest = 0
        for signal in range(N_SIGNALS):
            value = signals[signal]
            sorted_values = ordered[signal]
            if size >= min_history:
                start = sorted_values[k]
                if value > start:
                    tail = size - k
                    total = 0.0
                    for j in range(k, size):
                        total += sorted_values[j]
                    excess = total / tail - start
                    tail_value = math.log(size / tail) + ((value - start) / excess if excess > 0.0 else max_tail)
                    if tail_value > best:
                        best = tail_value
                else:
                    position = np.searchsorted(sorted_values[:size], value)
                    if position > highest:
                        highest = position
            if learn:
                _insert(sorted_values, size, value)
                slot = done % history
                if size >= history:
                    _remove(sorted_values, size + 1, arrival[signal, slot])
                arrival[signal, slot] = value
        if learn:
            learned[s] = done + 1
        if best == 0.0 and size >= min_history:
            best = math.log((size + 1) / (size - highest + 1))
    _learn_raw(ctx, recent, count + 1, y, e, long_alpha)
    return best


@numba.njit(cache=True, nogil=True)
def _insert(sorted_values, size, value):
    """Insert ``value`` into the first ``size`` (sorted) entries, before any equal ones."""
    position = np.searchsorted(sorted_values[:size], value)
    for j in range(size, position, -1):
        sorted_values[j] = sorted_values[j - 1]
    sorted_values[position] = value


@numba.njit(cache=True, nogil=True)
def _remove(sorted_values, size, value):
    """Remove one entry equal to ``value`` from the first ``size`` (sorted) entries."""
    for j in range(np.searchsorted(sorted_values[:size], value), size - 1):
        sorted_values[j] = sorted_values[j + 1]


@numba.njit(cache=True, nogil=True)
def _learn_raw(ctx, recent, count, y, e, long_alpha):
    """Raw running moments: exact while young, exponentially weighted (time constant 1/long_alpha) after."""
    width = recent.shape[0]
    if count == 1:
        ctx[RAW_MEAN] = y
        ctx[RAW_ERROR_MEAN] = e
        recent[0] = y
        return
    alpha = max(1.0 / count, long_alpha)
    delta = y - ctx[RAW_MEAN]
    ctx[RAW_MEAN] += alpha * delta
    ctx[RAW_VAR] = (1.0 - alpha) * (ctx[RAW_VAR] + alpha * delta * delta)
    step = y - recent[(count - 2) % width]
    ctx[RAW_STEP_VAR] = step * step if count == 2 else (1.0 - alpha) * ctx[RAW_STEP_VAR] + alpha * step * step
    e_delta = e - ctx[RAW_ERROR_MEAN]
    ctx[RAW_ERROR_MEAN] += alpha * e_delta
    ctx[RAW_ERROR_VAR] = (1.0 - alpha) * (ctx[RAW_ERROR_VAR] + alpha * e_delta * e_delta)
    recent[(count - 1) % width] = y


@numba.njit(cache=True, nogil=True)
def _learn_warmup(ctx, count, y, e):
    """Exact running mean and variance (Welford) until the service has enough history for EWMAs."""
    if count == 1:
        ctx[SLOW_MEAN] = ctx[FAST_MEAN] = ctx[MEDIUM_MEAN] = ctx[LONG_MEAN] = ctx[LAST] = y
        ctx[ERROR_MEAN] = e
        return
    delta = y - ctx[SLOW_MEAN]
    ctx[SLOW_MEAN] += delta / count
    ctx[SLOW_VAR] += (delta * (y - ctx[SLOW_MEAN]) - ctx[SLOW_VAR]) / count  # population variance
    step = y - ctx[LAST]
    ctx[STEP_VAR] += (step * step - ctx[STEP_VAR]) / (count - 1)
    ctx[LAST] = y
    e_delta = e - ctx[ERROR_MEAN]
    ctx[ERROR_MEAN] += e_delta / count
    ctx[ERROR_VAR] += (e_delta * (e - ctx[ERROR_MEAN]) - ctx[ERROR_VAR]) / count
    ctx[FAST_MEAN] = ctx[MEDIUM_MEAN] = ctx[LONG_MEAN] = ctx[SLOW_MEAN]
    ctx[FAST_VAR] = ctx[SLOW_VAR]
