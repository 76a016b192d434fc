"""The Numenta Anomaly Benchmark (NAB) scorer, faithful to Numenta's ``nab/sweeper.py``, vectorised.

NAB layout (any folder): ``data/<category>/<file>.csv`` with columns ``timestamp,value`` and
``labels/combined_windows.json`` mapping ``"<category>/<file>.csv"`` to ``[[start, end], ...]``.

Scoring rules, as in Numenta's code:

* each row gets a weight: inside a window, ``scaledSigmoid(-(right - i + 1) / width) * tpWeight / maxTP``
  (the window's first row is worth ``tpWeight``, the value falls towards 0 at its end); outside,
  ``scaledSigmoid(|i - prevRight| / (prevWidth - 1)) * fpWeight`` relative to the previous window
  (``-fpWeight`` before the first window), so a false alarm just after a window costs less;
* the first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows of each file are probation: not scored;
* at a threshold ``t`` a row is a detection when ``score >= t``; a window scores the weight of its
  EARLIEST detection, or ``-fnWeight`` if it has none; every false-positive detection adds its weight;
* ONE threshold per profile is swept over the whole corpus (every distinct score is a candidate) and the
  best total kept; the total is normalised so that the null detector scores 0 and the perfect one 100
  (perfect = every window detected on its first row, no false positive = ``tpWeight`` per window).
"""

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventbus import time_cell_seconds

PROBATION_PERCENT = 0.15


@dataclass(frozen=True)
class CostProfile:
    """One of NAB's application profiles (``config/profiles.json`` in Numenta's NAB repository)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: tuple[CostProfile, ...] = (
    CostProfile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    CostProfile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    CostProfile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
)


@dataclass(frozen=True)
class NabSeries:
    """One NAB data file: its values and its labelled windows as inclusive row ranges."""

    name: str  # "<category>/<file>.csv", the key in combined_windows.json
    timestamps: np.ndarray  # datetime64[s]
    values: np.ndarray  # float64
    windows: tuple[tuple[int, int], ...]  # inclusive (first row, last row)

    @property
    def service(self) -> str:
        """The replay's service name: the file name without its extension."""
        return Path(self.name).stem


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw_score: float
    null_score: float
    perfect_score: float

    @property
    def normalised(self) -> float:
        return 100.0 * (self.raw_score - self.null_score) / (self.perfect_score - self.null_score)


def scaled_sigmoid(relative_position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: 2·sigmoid(-5·x) - 1, and exactly -1 from x >= 3."""
    x = np.asarray(relative_position, dtype=np.float64)
    return np.where(x >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(rows: int) -> int:
    return int(min(math.floor(PROBATION_PERCENT * rows), PROBATION_PERCENT * 5000))


def _parse_time(text: str) -> np.datetime64:
    """ISO-8601 (NAB's ``2014-04-01 00:00:00``), or epoch seconds or ms as a number."""
    return np.datetime64(round(time_cell_seconds(text)), "s")


def load_corpus(root: str | Path, windows_file: str = "labels/combined_windows.json") -> list[NabSeries]:
    """Every file listed in the windows file, in the file's order."""
    root = Path(root)
    with open(root / windows_file) as handle:
        labelled: dict[str, list[list[str]]] = json.load(handle)
    corpus = []
    for name, windows in labelled.items():
        with open(root / "data" / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        timestamps = np.array([_parse_time(r["timestamp"]) for r in rows], dtype="datetime64[s]")
        values = np.array([float(r["value"]) for r in rows], dtype=np.float64)
        corpus.append(NabSeries(name, timestamps, values, _window_rows(name, timestamps, windows)))
    return corpus


def _window_rows(name: str, timestamps: np.ndarray, windows: Sequence[Sequence[str]]) -> tuple[tuple[int, int], ...]:
    rows = []
    for start, end in windows:
        first, last = (int(np.searchsorted(timestamps, _parse_time(t))) for t in (start, end))
        if last >= len(timestamps) or timestamps[first] != _parse_time(start) or timestamps[last] != _parse_time(end):
            raise ValueError(f"{name}: window {start} .. {end} does not match the file's timestamps")
        rows.append((first, last))
    return tuple(sorted(rows))


def row_weights(rows: int, windows: Sequence[tuple[int, int]], profile: CostProfile) -> np.ndarray:
    """Each row's weight if it were a detection (NAB's ``sweepScore``)."""
    weights = np.empty(rows, dtype=np.float64)
    index = np.arange(rows, dtype=np.float64)
    cursor = 0
    prev_right: int | None = None
    prev_width = 0.0
    for left, right in windows:
        _fill_outside(weights, index, cursor, left, prev_right, prev_width, profile)
        width = float(right - left + 1)
        position = -(right - index[left : right + 1] + 1) / width
        weights[left : right + 1] = scaled_sigmoid(position) * profile.tp_weight / MAX_TP
        cursor, prev_right, prev_width = right + 1, right, width
    _fill_outside(weights, index, cursor, rows, prev_right, prev_width, profile)
    return weights


def _fill_outside(
    weights: np.ndarray,
    index: np.ndarray,
    start: int,
    stop: int,
    prev_right: int | None,
    prev_width: float,
    profile: CostProfile,
) -> None:
    if start >= stop:
        return
    if prev_right is None:
        weights[start:stop] = -profile.fp_weight
    else:
        past = np.abs(prev_right - index[start:stop]) / max(prev_width - 1.0, 1.0)
        weights[start:stop] = scaled_sigmoid(past) * profile.fp_weight


def _scored_windows(series: NabSeries) -> list[tuple[int, int]]:
    """Windows clipped to the scored rows (after probation); windows wholly in probation do not count."""
    first = probation_length(len(series.values))
    return [(max(left, first), right) for left, right in series.windows if right >= first]


def score_at_threshold(series: NabSeries, scores: np.ndarray, threshold: float, profile: CostProfile) -> float:
    """NAB's raw score of one file for detections ``scores >= threshold`` (direct, unvectorised rules)."""
    outcome = _outcome(series, np.asarray(scores) >= threshold, profile)
    total = sum(-profile.fn_weight if weight is None else weight for weight in outcome.first_weights)
    return total + float(outcome.false_weights.sum())


@dataclass(frozen=True)
class _Outcome:
    """One file's detections as NAB counts them."""

    first_weights: list[float | None]  # per scored window, its first detection's weight (None: missed)
    false_weights: np.ndarray  # the weights of the false alarms: after the probation, outside every window


def _outcome(series: NabSeries, detected: np.ndarray, profile: CostProfile) -> _Outcome:
    weights = row_weights(len(series.values), series.windows, profile)
    in_window = np.zeros(len(weights), dtype=bool)
    first_weights: list[float | None] = []
    for left, right in _scored_windows(series):
        in_window[left : right + 1] = True
        hits = np.flatnonzero(detected[left : right + 1])
        first_weights.append(float(weights[left + hits[0]]) if len(hits) else None)
    false_alarms = detected & ~in_window
    false_alarms[: probation_length(len(weights))] = False
    return _Outcome(first_weights, weights[false_alarms])


def sweep(corpus: Sequence[NabSeries], scores: Mapping[str, np.ndarray], profile: CostProfile) -> ProfileResult:
    """The corpus-wide best threshold for ``profile`` (NAB's ``calcScoreByThreshold`` on all files at once)."""
    values: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    base = 0.0
    windows = 0
    for series in corpus:
        file_scores = np.asarray(scores[series.name], dtype=np.float64)
        if len(file_scores) != len(series.values):
            raise ValueError(f"{series.name}: {len(file_scores)} scores for {len(series.values)} rows")
        weights = row_weights(len(file_scores), series.windows, profile)
        outside = np.ones(len(file_scores), dtype=bool)
        outside[: probation_length(len(file_scores))] = False
        for left, right in series.windows:
            outside[left : right + 1] = False
        values.append(file_scores[outside])
        deltas.append(weights[outside])
        for left, right in _scored_windows(series):
            base -= profile.fn_weight
            windows += 1
            record_values, record_weights = _records(file_scores[left : right + 1], weights[left : right + 1])
            # As the threshold falls, the highest record activates first, then earlier (better) ones.
            previous = np.append(record_weights[1:], -profile.fn_weight)
            values.append(record_values)
            deltas.append(record_weights - previous)
    all_values = np.concatenate(values) if values else np.empty(0)
    all_deltas = np.concatenate(deltas) if deltas else np.empty(0)
    order = np.argsort(-all_values, kind="stable")
    sorted_values = all_values[order]
    totals = base + np.cumsum(all_deltas[order])
    # The score at threshold v counts every row with score >= v: take the last row of each run of equal values.
    last_of_run = np.append(sorted_values[1:] != sorted_values[:-1], True) if len(sorted_values) else np.empty(0, bool)
    candidates = totals[last_of_run]
    thresholds = sorted_values[last_of_run]
    null_score = -profile.fn_weight * windows
    if len(candidates) == 0 or candidates.max() <= base:
        best_threshold = float(all_values.max()) + 1.0 if len(all_values) else 1.0
        raw = base
    else:
        best = int(np.argmax(candidates))  # first maximum = highest threshold reaching it, as NAB keeps
        best_threshold, raw = float(thresholds[best]), float(candidates[best])
    return ProfileResult(profile.name, best_threshold, raw, null_score, profile.tp_weight * windows)


def _records(window_scores: np.ndarray, window_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose score beats every earlier row's in the window: the only ones that can be its earliest detection."""
    running_max = np.maximum.accumulate(window_scores)
    is_record = np.empty(len(window_scores), dtype=bool)
    is_record[0] = True
    is_record[1:] = window_scores[1:] > running_max[:-1]
    return window_scores[is_record], window_weights[is_record]


def score_corpus(corpus: Sequence[NabSeries], scores: Mapping[str, np.ndarray]) -> dict[str, ProfileResult]:
    """NAB's three profiles, each with its own swept threshold."""
    return {profile.name: sweep(corpus, scores, profile) for profile in PROFILES}


def category_scores(
    corpus: Sequence[NabSeries], scores: Mapping[str, np.ndarray], threshold: float, profile: CostProfile
) -> dict[str, float]:
    """Normalised score of each category (``<category>/`` prefix) at ONE given threshold (the corpus-wide one).

    Shows where a detector gains and loses at the threshold it really runs with; categories without a scored
    window have no normalised score and are left out (their false positives still count in the corpus score).
    """
    raw: dict[str, float] = {}
    windows: dict[str, int] = {}
    for series in corpus:
        category = series.name.split("/", 1)[0]
        raw[category] = raw.get(category, 0.0) + score_at_threshold(series, scores[series.name], threshold, profile)
        windows[category] = windows.get(category, 0) + len(_scored_windows(series))
    result = {}
    for category, count in windows.items():
        if count:
            null, perfect = -profile.fn_weight * count, profile.tp_weight * count
            result[category] = 100.0 * (raw[category] - null) / (perfect - null)
    return result


@dataclass(frozen=True)
class Losses:
    """Where one category's points go at given detections, in points of the whole corpus's normalised score
    (a perfect detector's total): a missed window costs the reward and the miss, a late first detection what
    it earns less than the reward, a false alarm its weight. The categories' losses add up
    to 100 minus the corpus score."""

    windows: int
    missed: int
    false_alarms: int
    missed_points: float
    late_points: float
    false_points: float

    @property
    def points(self) -> float:
        return self.missed_points + self.late_points + self.false_points


def losses(corpus: Sequence[NabSeries], detected: Mapping[str, np.ndarray], profile: CostProfile) -> dict[str, Losses]:
    """Per category (``<category>/`` prefix), what ``detected`` (true where a row is a detection, e.g. a page)
    loses against a perfect detector; windows and false alarms counted as ``score_at_threshold`` does."""
    outcomes = [_outcome(series, np.asarray(detected[series.name], dtype=bool), profile) for series in corpus]
    unit = 100.0 / ((profile.tp_weight + profile.fn_weight) * sum(len(o.first_weights) for o in outcomes) or 1.0)
    counts: dict[str, list[float]] = {}
    for series, outcome in zip(corpus, outcomes, strict=True):
        row = counts.setdefault(series.name.split("/", 1)[0], [0, 0, 0, 0.0, 0.0, 0.0])
        for weight in outcome.first_weights:
            row[0] += 1
            if weight is None:
                row[1] += 1
                row[3] += profile.tp_weight + profile.fn_weight
            else:
                row[4] += profile.tp_weight - weight
        row[2] += len(outcome.false_weights)
        row[5] -= float(outcome.false_weights.sum())
    return {
        category: Losses(int(w), int(m), int(f), mp * unit, lp * unit, fp * unit)
        for category, (w, m, f, mp, lp, fp) in counts.items()
    }
