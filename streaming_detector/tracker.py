"""Per-service streaming state and the context vector computed from it.

The vector has two parts:

* ``FOREST_FEATURES``: scale-free deviations in the service's own spread (log-latency baselines with capped
  learning, so an incident does not become the normal). The IsolationForest scores these. They assume the
  shape of normal latency (log-normal noise around a level), which is right for a young service.
* ``surprise`` and ``history_weight``: the service's OWN history speaking. A few raw signals (distance from
  the long-term level, step size, shift of the recent mean, error excess) are each ranked against that
  signal's last ``history`` values: the tail surprisal ``-log P(signal >= s)`` in nats, exact in the bulk and
  an exponential tail (fitted above the ``tail_quantile``) beyond it; ``surprise`` is the largest. This is what makes
  one threshold fit a CPU percentage, a tweet count and a 20 ms service. A lasting change the history rates only
  mildly, event after event, is the run: the smallest of the service's last ``RUN_EVENTS`` surprisals, ranked
  against its own history of runs (``kernels``). ``history_weight`` says how much
  that history is trusted: 0 for a new service, rising to ``history_weight_max`` as events accumulate.

The model (``ContextModel``, run by the ML service) blends the forest's verdict with ``surprise`` by ``history_weight``.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

FOREST_FEATURES = (
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
CONTEXT_FEATURES = (
    *FOREST_FEATURES,
    *HISTORY_FEATURES,
)  # the vector the processor sends: the forest's, then the history's
N_SIGNALS = 5  # calibrated signals: level distance, step size, recent-mean shift, error excess, hour's level
RUN_EVENTS = 8  # the run: the smallest surprisal of a service's last this many events
HISTORIES = N_SIGNALS + 1  # ranked histories a service keeps: each signal's, then the run's


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
    # Past values of each signal its calibration ranks against: a service's last 4,000 events, so what
    # recurs every day or two (a nightly jump) is in it (figures: docs/tuning.md).
    history: int = 4000
    # Every this many events a service's signals join its history. Keep 1: a periodic spike sampled at the
    # wrong phase never enters a sparser history and pages every time.
    history_every: int = 1
    # Calibration needs this many past values (else surprisal 0): with 20, the tail was extrapolated from two
    # values, and new services alerted early.
    min_history: int = 160
    # Beyond this quantile of the history an exponential tail is extrapolated (0.75-0.9 score alike).
    tail_quantile: float = 0.8
    max_tail: float = 20.0  # tail term when the history's top is flat (any excess is unprecedented)
    # Time, not counts (by the event's own time): a tail signal that reached its value in the same hour (or
    # a neighbouring one) on half (and at least ``season_evidence``) of the last ``season_days`` days, or of
    # the same weekdays of the last ``season_weeks`` weeks, is routine whatever the event rate: a daily cycle,
    # a nightly job.
    season_bin_seconds: int = 3600
    season_days: int = 7
    season_weeks: int = 4
    season_evidence: int = 2
    # ... within this factor of the hour's maximum on those days: an hour's maximum is itself noisy.
    season_margin: float = 1.5
    # history_weight = max * n / (n + events): a young service is judged by the forest; a mature one a little
    # more by its own history than by the forest. More lets repeated incidents in a long history hide the next.
    history_weight_max: float = 0.55
    # Half of the maximum after this many events: the forest keeps more say while the history is short.
    history_weight_events: float = 800.0
    # ... or after this many days of the service's event times, if sooner: a slow service's days count too.
    history_weight_days: float = 1.0


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
    "raw_error_mean",
    "raw_error_var",
    "first_time",  # the earliest event time seen (0: none yet)
    "hour_cell",  # 1 + the hour (since the epoch) whose baseline ``hour_usual`` holds (0: none)
    "hour_usual",  # that hour's baseline level (NaN: too few days)
    "scores_seen",  # context scores the gate judged (``ContextTracker.judge_scores``)
    "high_share",  # the share of them above ``QuietRule.level``, averaged over about its last ``window``
    "run_last",  # the run at the service's last event (a run counts only while it rises)
    *(f"run_surprise_{j}" for j in range(RUN_EVENTS)),  # the last surprisals, a ring by event count
)


_EMPTY = {"_season_day": -1, "_season_max": -np.inf}  # what a new service's row starts with (else 0)
# ``ContextTracker``'s arrays with a row per service
_ROWS = (
    "_counts",
    "_numbers",
    "_recent",
    "_learned",
    "_arrival",
    "_ordered",
    "_season_day",
    "_season_max",
    "_season_level",
)


@dataclass(frozen=True)
class QuietRule:
    """When a service is quiet (``ContextTracker.judge_scores``): after ``min_scores`` context scores, fewer than
    ``share`` of its last ~``window`` scores (an exponential average) above ``level`` nats."""

    level: float
    share: float
    window: int
    min_scores: int


def season_ring(config: "ContextConfig") -> int:
    """Days of hourly maxima a service keeps: enough for the daily and the weekly look back."""
    return max(config.season_days, 7 * config.season_weeks) + 1


@dataclass
class ServiceArrays:
    """One service's rows of ``ContextTracker``'s arrays, as they are (rings included): what a snapshot holds.

    ``arrival`` keeps only the filled part of each history (the signals', then the run's; ``min(learned,
    history)`` values): the sorted copy is rebuilt from it, so a young service's snapshot is small. Likewise
    only the days of the hourly ring that hold a day are kept (``days``, each at ``day % season_ring`` in the
    tracker).
    """

    count: int
    learned: int
    numbers: np.ndarray  # (len(NUMBERS),)
    recent: np.ndarray  # (max(1, surprise_window - 1),) the ring as stored
    arrival: np.ndarray  # (HISTORIES, min(learned, history)) the ring as stored
    days: np.ndarray  # (d,) int64: the days held
    season_max: np.ndarray  # (d, bins, HISTORIES) those days' hourly maxima (the signals', the run's)
    season_level: np.ndarray  # (d, bins, 2) those days' hourly sums and counts of log values


def transform(values: np.ndarray, config: ContextConfig) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.log1p(np.abs(values)) if config.log_values else values


class Spread(NamedTuple):
    """One service's scales, in the tracker's (log) space: what turns a feature back into a value."""

    sd: float  # spread of the level around the baseline
    step_sd: float  # spread of one event's step
    long_mean: float  # long-term level
    error_sd: float  # spread of the error rate (with its floor)


class ContextTracker:
    """Every service's online state; ``features`` scores events in their service's context, then learns them.

    For each event, in order: its features come from the state BEFORE it (plus the event itself),
    then the state learns it. A service's first ``warmup_events`` events get ``warm=False``.

    The state is a few arrays with one row per service (numbers, the recent raw values, and each calibrated
    signal's history in arrival order and sorted); the per-event loop is compiled (numba), as it runs for
    every event in the processor: about 3 µs an event (a third of it keeping 4,000 values a signal sorted).
    """

    def __init__(self, config: ContextConfig | None = None, *, rhythm: bool = True) -> None:
        """``rhythm=False`` only measures what the time-of-day state costs (benchmarks): the tracker without it
        (event times ignored, no hourly maxima or baselines, no hour-baseline signal), as it was before."""
        # numba (~30 MiB private, ~130 MiB shared a process) loads only where context is tracked (or will be)
        from streaming_detector.kernels import advance_context, judge_scores

        self._advance = advance_context
        self._judge = judge_scores
        self.config = config or ContextConfig()
        self.rhythm = rhythm
        self._allocate(8)

    def _allocate(self, capacity: int) -> None:
        cfg = self.config
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._counts = np.zeros(capacity, dtype=np.int64)  # events seen per service
        self._numbers = np.zeros((capacity, len(NUMBERS)), dtype=np.float64)
        self._recent = np.zeros((capacity, max(1, cfg.surprise_window - 1)), dtype=np.float64)  # ring, raw values
        self._learned = np.zeros(capacity, dtype=np.int64)  # values ever added to each signal's history
        # The kernel ranks as many signals as the arrays hold (the last row is the run's).
        rows = HISTORIES if self.rhythm else HISTORIES - 1
        self._arrival = np.zeros((capacity, rows, cfg.history), dtype=np.float64)  # ring
        self._ordered = np.zeros((capacity, rows, cfg.history), dtype=np.float64)  # sorted
        # Each signal's (and the run's) maximum per hour of the last days (a ring of days, by the event's time).
        ring, bins = season_ring(cfg) if self.rhythm else 0, 86_400 // cfg.season_bin_seconds
        self._season_day = np.full((capacity, ring), -1, dtype=np.int64)  # the day each slot holds (-1: none)
        self._season_max = np.full((capacity, ring, bins, HISTORIES), -np.inf, dtype=np.float64)
        self._season_level = np.zeros((capacity, ring, bins, 2), dtype=np.float64)  # sum and count of log values

    def _add(self, name: str) -> int:
        slot = len(self.names)
        if slot == len(self._counts):
            grown = 2 * slot
            for attr in _ROWS:
                old = getattr(self, attr)
                new = np.full((grown, *old.shape[1:]), _EMPTY.get(attr, 0), dtype=old.dtype)
                new[:slot] = old
                setattr(self, attr, new)
        self.names.append(name)
        self._index[name] = slot
        return slot

    def features(
        self,
        services: Sequence[str],
        latency_ms: Iterable[float],
        error_rate: Iterable[float],
        event_time: Iterable[float | None] | None = None,
        hour_surprise: np.ndarray | None = None,
        calm_excess: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(context (n, len(CONTEXT_FEATURES)), warm (n,) bool)`` for events given column-wise, in stream order.

        ``event_time``: each event's time in epoch seconds (None, or not given: unknown, so the event is judged
        by its service's recent events only). ``hour_surprise`` ((n,) float, if given) is filled with each
        event's hour-baseline surprisal: its level against the usual level at its hour, where the hour has a
        baseline and an earlier day's maximum to judge by (else 0; the gate's ``hour_scores``). ``calm_excess``
        likewise: how much higher each event's surprise would be were its level distance routine only once the
        history reached it on several separate occasions, not two values (mostly 0; the gate's ``calm_scores``).
        """
        cfg = self.config
        get = self._index.get
        slots = [get(name) for name in services]
        if None in slots:
            slots = [self._index[name] if name in self._index else self._add(name) for name in services]
        ids = np.array(slots, dtype=np.int64)
        raw = np.fromiter(latency_ms, dtype=np.float64)
        errors = np.fromiter(error_rate, dtype=np.float64)
        n = len(ids)
        times = (
            np.full(n, np.nan)
            if event_time is None or not self.rhythm
            else np.array([np.nan if t is None else t for t in event_time], dtype=np.float64)
        )
        times[~np.isfinite(times)] = np.nan
        rows = np.zeros((n, len(CONTEXT_FEATURES)), dtype=np.float64)
        warm = np.zeros(n, dtype=np.bool_)
        if hour_surprise is None:
            hour_surprise = np.empty(n, dtype=np.float64)
        hour_surprise[:] = 0.0
        if calm_excess is None:
            calm_excess = np.empty(n, dtype=np.float64)
        calm_excess[:] = 0.0
        self._advance(
            ids, transform(raw, cfg), raw, errors, times, rows, warm,
            self._counts, self._numbers, self._recent, self._learned, self._arrival, self._ordered,
            self._season_day, self._season_max, self._season_level,
            cfg.warmup_events, cfg.fast_alpha, cfg.slow_alpha, cfg.medium_alpha, cfg.long_alpha, cfg.clip_sigmas,
            cfg.error_floor**2, cfg.history_weight_max, cfg.history_weight_events, cfg.history_weight_days,
            cfg.surprise_alpha, cfg.history, cfg.history_every, cfg.min_history, cfg.tail_quantile, cfg.max_tail,
            float(cfg.season_bin_seconds), cfg.season_days, cfg.season_weeks, cfg.season_evidence,
            cfg.season_margin, cfg.log_values, hour_surprise, calm_excess,
        )  # fmt: skip
        return rows, warm

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self.names)

    def export(self, name: str) -> ServiceArrays:
        """A copy of ``name``'s state (``KeyError`` if it has none here)."""
        slot = self._index[name]
        size = min(int(self._learned[slot]), self.config.history)
        held = np.flatnonzero(self._season_day[slot] >= 0)
        return ServiceArrays(
            int(self._counts[slot]),
            int(self._learned[slot]),
            self._numbers[slot].copy(),
            self._recent[slot].copy(),
            self._arrival[slot, :, :size].copy(),
            self._season_day[slot, held],
            self._season_max[slot, held],
            self._season_level[slot, held],
        )

    def restore(self, name: str, state: ServiceArrays) -> None:
        """Give ``name`` the state ``export`` returned (replacing any it has): it then scores as it would have."""
        history = self.config.history
        size = state.arrival.shape[1]
        if (
            state.recent.shape != self._recent.shape[1:]
            or size != min(state.learned, history)
            or state.season_max.shape[1:] != self._season_max.shape[2:]
        ):
            raise ValueError(f"state of {name!r} does not fit this configuration")
        slot = self._index[name] if name in self._index else self._add(name)
        self._clear(slot)
        self._counts[slot] = state.count
        self._learned[slot] = state.learned
        self._numbers[slot] = state.numbers
        self._recent[slot] = state.recent
        self._arrival[slot, :, :size] = state.arrival
        self._ordered[slot, :, :size] = np.sort(state.arrival, axis=1)
        held = state.days % self._season_day.shape[1]
        self._season_day[slot, held] = state.days
        self._season_max[slot, held] = state.season_max
        self._season_level[slot, held] = state.season_level

    def remove(self, name: str) -> None:
        """Forget ``name``: the last service moves into its slot, so the arrays stay dense."""
        slot = self._index.pop(name)
        last = len(self.names) - 1
        if slot != last:
            moved = self.names[last]
            for attr in _ROWS:
                array = getattr(self, attr)
                array[slot] = array[last]
            self.names[slot] = moved
            self._index[moved] = slot
        self._clear(last)  # the next service added here starts from nothing
        self.names.pop()

    def _clear(self, slot: int) -> None:
        for attr in _ROWS:
            getattr(self, attr)[slot] = _EMPTY.get(attr, 0)

    def spreads(self, services: Iterable[str]) -> dict[str, Spread]:
        """The current scales of the warm ones of ``services`` (what turns a feature back into a value)."""
        columns = [NUMBERS.index(n) for n in ("slow_var", "step_var", "long_mean", "error_var")]
        floor_sq = self.config.error_floor**2
        out: dict[str, Spread] = {}
        for name in services:
            slot = self._index.get(name)
            if slot is None or self._counts[slot] <= self.config.warmup_events:
                continue
            slow_var, step_var, long_mean, error_var = self._numbers[slot, columns].tolist()
            out[name] = Spread(
                math.sqrt(max(slow_var, 0.0)),
                math.sqrt(max(step_var, 0.0)),
                long_mean,
                math.sqrt(max(error_var, 0.0) + floor_sq),
            )
        return out

    def judge_scores(
        self,
        services: Sequence[str],
        scores: Sequence[float] | np.ndarray,
        rule: QuietRule,
        calm: tuple[float, int] = (0.0, 0),
        calm_out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``quiet (n,) bool`` for context scores given in stream order: whether each event's service was quiet
        (``rule``) before it; then each score is learned. The services must be here (``KeyError``). ``calm_out``
        (if given) is filled with the same judgement against ``calm`` (share, scores) instead of the rule's."""
        index = self._index
        ids = np.array([index[name] for name in services], dtype=np.int64)
        quiet = np.zeros(len(ids), dtype=np.bool_)
        if calm_out is None:
            calm_out = np.zeros(len(ids), dtype=np.bool_)
        self._judge(
            ids, np.asarray(scores, dtype=np.float64), self._numbers, rule.level, rule.share, rule.window,
            rule.min_scores, quiet, float(calm[0]), int(calm[1]), calm_out,
        )  # fmt: skip
        return quiet

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
            self._numbers[slot] = [math.nan if service[k] is None else float(service[k]) for k in NUMBERS]
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
            ring = self._season_day.shape[1]
            for day, season in service["season"].items():
                self._season_day[slot, int(day) % ring] = int(day)
                self._season_max[slot, int(day) % ring] = [
                    [-math.inf if v is None else float(v) for v in hour] for hour in season["max"]
                ]
                self._season_level[slot, int(day) % ring] = season["level"]

    def _state(self, slot: int) -> dict[str, Any]:
        count, learned, history = int(self._counts[slot]), int(self._learned[slot]), self.config.history
        width = self._recent.shape[1]
        size = min(learned, history)
        return {
            "count": count,
            **{k: v if v == v else None for k, v in zip(NUMBERS, self._numbers[slot].tolist(), strict=True)},
            "recent": [float(self._recent[slot, j % width]) for j in range(count - min(count, width), count)],
            "learned": learned,
            "history": [
                [float(self._arrival[slot, signal, j % history]) for j in range(learned - size, learned)]
                for signal in range(self._arrival.shape[1])
            ],
            # day -> per hour, each signal's maximum (None: no event in that hour) and the sum and count of levels
            "season": {
                str(day): {
                    "max": [
                        [v if v > -math.inf else None for v in hour] for hour in self._season_max[slot, k].tolist()
                    ],
                    "level": self._season_level[slot, k].tolist(),
                }
                for k, day in enumerate(self._season_day[slot].tolist())
                if day >= 0
            },
        }


def load_compiled_tracker() -> None:
    """Load the tracker's compiled loops now (its features and its judgement of scores, both run every batch):
    numba and its cached machine code, about 0.7 s in a new process.

    A process that forks workers calls it first, so that each worker inherits the loaded code instead of loading
    its own when its first batch arrives; ``python -m streaming_detector.warm`` compiles them into the cache.
    """
    from streaming_detector.gate import CALM, QUIET

    tracker = ContextTracker()
    tracker.features(["load"], [1.0], [0.0])
    tracker.judge_scores(["load"], [0.0], QUIET, CALM)
