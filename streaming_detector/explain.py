"""Why a verdict is what it is: the signal that drove the score, its value, and the service's normal then.

Pure computation over the tracker's state (``ContextTracker.spreads``). Context-scored events are explained
from their context features and their service's spreads taken before the batch: each feature is a deviation
in the service's own spread (``level_z = (y - baseline) / sd``), so the baseline at that event is
``y - level_z * sd``. The spreads move slowly (~100 events), so spreads from
the start of the batch are close to the event's own. The signal is the feature that deviates most.
Events scored by the point model (their service still warms up) are explained against the point model's
training data (``GET /model``: mean and spread of latency and error rate over all services).

Severity (``score / threshold`` of the model that scored the event) is the scale users see: 1.0 is the
alert threshold whichever model answered.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from streaming_detector.tracker import Spread

BAND_SIGMAS = 2.0  # the normal band: expected ± this many of the service's spreads
# Context features (``streaming_detector.tracker.CONTEXT_FEATURES``) that name a signal, in that order.
LEVEL, RECENT, DRIFT, STEP, ERROR = 0, 1, 2, 3, 5
SIGNALS = ("latency level", "sustained shift", "latency drift", "latency step", "error rate")
_COLUMNS = (LEVEL, RECENT, DRIFT, STEP, ERROR)
_HUGE = 1e300


class Measured(Protocol):
    """What an explanation reads of an event (``eventbus.LogEvent`` has it)."""

    @property
    def service(self) -> str: ...

    @property
    def latency_ms(self) -> float: ...

    @property
    def error_rate(self) -> float: ...


class PointReference(NamedTuple):
    """The point model's threshold and the training data's latency and error-rate mean and spread."""

    threshold: float
    latency_mean: float
    latency_std: float
    error_mean: float
    error_std: float

    @classmethod
    def from_model_info(cls, info: Mapping[str, Any]) -> "PointReference | None":
        try:
            features = info["training"]["features"]
            return cls(
                float(info["threshold"]),
                float(features["latency_ms"]["mean"]),
                float(features["latency_ms"]["std"]),
                float(features["error_rate"]["mean"]),
                float(features["error_rate"]["std"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def explain_context(
    events: Sequence[Measured],
    contexts: Sequence[Sequence[float]],
    scores: Sequence[float],
    spreads: Mapping[str, Spread],
    threshold: float | Sequence[float],
    log_values: bool = True,
) -> list[dict[str, Any]]:
    """An ``eventbus.Explanation`` (as a dict) per context-scored event; ``threshold``: one, or each event's
    (its service's sensitivity moves it), severity 1 at it."""
    if not events:
        return []
    zero = Spread(0.0, 0.0, 0.0, 0.0)
    rows = [spreads.get(event.service, zero) for event in events]
    sd, step_sd, long_mean, error_sd = (np.array(column, dtype=np.float64) for column in zip(*rows, strict=True))
    features = np.asarray(contexts, dtype=np.float64)
    latency = np.array([event.latency_ms for event in events], dtype=np.float64)
    errors = np.array([event.error_rate for event in events], dtype=np.float64)
    # The tracker's space: sign(x)·log1p(|x|) (a replayed metric may be negative; an event's latency is not).
    y = np.sign(latency) * np.log1p(np.abs(latency)) if log_values else latency

    def back(values: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            out = np.sign(values) * np.expm1(np.abs(values)) if log_values else values
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=_HUGE, neginf=0.0), 0.0, _HUGE)

    z = np.abs(features[:, _COLUMNS])
    pick = np.argmax(np.nan_to_num(z, nan=0.0), axis=1)
    baseline = y - features[:, LEVEL] * sd
    band = BAND_SIGMAS * sd
    previous = y - features[:, STEP] * step_sd
    error_mean = errors - features[:, ERROR] * error_sd
    # Per signal: observed, expected, low, high (latency ones in the tracker's space, turned back below).
    observed = np.choose(pick, [y, baseline + features[:, RECENT] * sd, long_mean + features[:, DRIFT] * sd, y, errors])
    expected = np.choose(pick, [baseline, baseline, long_mean, previous, error_mean])
    width = np.choose(pick, [band, band, band, BAND_SIGMAS * step_sd, BAND_SIGMAS * error_sd])
    is_error = pick == len(SIGNALS) - 1
    low, high = expected - width, expected + width
    observed, expected, low, high = (
        np.where(is_error, np.clip(v, 0.0, 1.0), back(v)) for v in (observed, expected, low, high)
    )
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(events),))
    raw = np.asarray(scores, dtype=np.float64)
    severity = np.where(limit > 0, raw / np.where(limit > 0, limit, 1.0), raw)
    return _dicts(pick, observed, expected, low, high, severity, "service")


def explain_point(
    events: Sequence[Measured], scores: Sequence[float], reference: PointReference
) -> list[dict[str, Any]]:
    """An explanation per point-scored event, against the point model's training data."""
    if not events:
        return []
    latency = np.array([event.latency_ms for event in events], dtype=np.float64)
    errors = np.array([event.error_rate for event in events], dtype=np.float64)
    r = reference
    latency_z = np.abs(latency - r.latency_mean) / max(r.latency_std, 1e-9)
    error_z = np.abs(errors - r.error_mean) / max(r.error_std, 1e-9)
    is_error = error_z > latency_z
    pick = np.where(is_error, len(SIGNALS) - 1, 0)
    observed = np.where(is_error, errors, latency)
    expected = np.where(is_error, r.error_mean, r.latency_mean)
    width = BAND_SIGMAS * np.where(is_error, r.error_std, r.latency_std)
    low = np.maximum(expected - width, 0.0)
    high = np.where(is_error, np.minimum(expected + width, 1.0), expected + width)
    severity = np.asarray(scores, dtype=np.float64) / r.threshold if r.threshold > 0 else np.asarray(scores)
    return _dicts(pick, observed, expected, low, high, severity, "all services")


def _dicts(
    pick: np.ndarray,
    observed: np.ndarray,
    expected: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    severity: np.ndarray,
    basis: str,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    severity = np.nan_to_num(severity, nan=0.0, posinf=_HUGE, neginf=-_HUGE)
    alerts = (severity > 1.0).tolist()  # before rounding: 1.0004 is an alert
    columns = (v.round(4).tolist() for v in (observed, expected, low, high))
    rows = zip(pick.tolist(), *columns, severity.round(3).tolist(), alerts, strict=True)
    for k, o, e, lo, hi, s, alert in rows:
        signal = SIGNALS[k]
        out.append(
            {
                "signal": signal,
                "observed": o,
                "expected": e,
                "low": lo,
                "high": hi,
                "unit": "ratio" if k == len(SIGNALS) - 1 else "ms",
                "severity": s,
                "basis": basis,
                # Formatting is half the cost of an explanation: the line is written for alerts, which people read.
                "text": describe(signal, o, e, lo, hi, basis) if alert else None,
            }
        )
    return out


def explanation_text(why: Mapping[str, Any]) -> str:
    """The explanation's line: its ``text``, or composed now for a verdict below the threshold."""
    text = why.get("text")
    if text is None:
        text = describe(why["signal"], why["observed"], why["expected"], why["low"], why["high"], why["basis"])
    return str(text)


def describe(signal: str, observed: float, expected: float, low: float, high: float, basis: str) -> str:
    """``latency 1,480 ms, usually 190–260 ms``: the explanation in one line."""
    where = "" if basis == "service" else " (all services: this one is still warming up)"
    if signal == "error rate":
        return f"error rate {_percent(observed)}, usually {_percent(low)}–{_percent(high)}{where}"
    usual = f"usually {_ms(low)}–{_ms(high)} ms{where}"
    if signal == "sustained shift":
        return f"recent latency {_ms(observed)} ms, {usual}"
    if signal == "latency drift":
        return f"latency drifting to {_ms(observed)} ms, {usual}"
    if signal == "latency step":
        return f"latency stepped to {_ms(observed)} ms from {_ms(expected)} ms, {usual}"
    return f"latency {_ms(observed)} ms, {usual}"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"
