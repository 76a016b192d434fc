"""The alert gate: per-service alert decisions from raw context scores, with a cool-down.

Sensitivity moves a service's threshold in steps of one nat (scores are surprisals): each step down roughly
triples the false alerts of a service on healthy traffic and catches smaller incidents (docs/tuning.md has the
measured curve, which ``make eval`` prints). A quiet service (``QUIET``: its context scores are rarely high)
alerts ``QUIET_RELIEF`` nats lower: among scores that are seldom above 5 nats, one above 8.5 says more than in a
service whose scores often are (a heavy-tailed series' spikes). The hour-baseline signal also speaks alone
(``hour_scores``): a level far from its hour's usual one scores at least its own surprisal less ``HOUR_MARGIN``.
A calm service (``CALM``, stricter than quiet) is scored with a spike routine only once it recurred on several
separate occasions (``calm_scores``), not after one earlier spike.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from streaming_detector.tracker import QuietRule

# Quiet: after 1,000 context scores, under 5% of its last ~1,000 above 5 nats. NAB pages 64.2 -> 67.1 standard,
# both halves up; its neighbours (level 4.5-5.5, share 3-8%, window 500-3,000) +1.5 to +2.9 (docs/tuning.md).
QUIET = QuietRule(level=5.0, share=0.05, window=1000, min_scores=1000)
QUIET_RELIEF = 0.5  # nats: 8.75 kept half the gain, 8.25 paged a deploy's new level at 1 event/s
# The hour-blind forest outvotes the hour-baseline signal in the blend (a quiet-hour incident at 1 event / 5 min:
# 11-23 nats of hour surprise, 3-7 from the forest, 7.6-8.8 blended): that signal, judged against its hour's
# baseline and an earlier day, scores alone at its surprisal less this. Quiet-hour incidents at 1/5min, seeds
# 0-23: 23/48 -> 48/48 (2 nats: 46/48); NAB, scenarios, rhythms' false pages the same from 1.5 to 2 nats, NAB
# one page more at 1 (docs/tuning.md).
HOUR_MARGIN = 1.5
# Calm: after 300 context scores, under 3% of its last ~1,000 above the quiet level (5 nats): a log-normal service,
# not a heavy-tailed count. Its events score as the history would with a distance from the service's level
# routine only once reached on several separate occasions (``calm_scores``): the scenarios' missed spikes,
# capped by one earlier spike's rank. Scenario F1 over 24 seeds 0.961 -> 0.970, NAB within 0.2 (docs/tuning.md).
CALM = (0.03, 300)  # share, scores


def calm_scores(
    scores: np.ndarray, model: np.ndarray, weight: np.ndarray, excess: np.ndarray, calm: np.ndarray
) -> np.ndarray:
    """The scores the gate judges, where the service is ``calm`` (``ContextTracker.judge_scores``): the model's
    blend with the history's surprise raised by ``excess`` (``ContextTracker.features``' ``calm_excess``; the blend
    is linear, the history's share ``weight``, the context's ``history_weight``), if higher than ``scores``
    (already ``hour_scores``)."""
    return np.where(calm, np.maximum(scores, model + weight * excess), scores)


@dataclass(frozen=True)
class GateConfig:
    """When a raw score becomes an alert; one configuration for every service (saved with the model)."""

    threshold: float  # raw score above which an event is anomalous (calibrated on healthy traffic)
    cooldown_events: int = 120  # after an alert, this many events of the same service raise no new alert

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "GateConfig":
        """The gate a trained context model's metadata describes: its threshold and training cool-down."""
        return cls(float(metadata["threshold"]), int(metadata["training"]["cooldown_events"]))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GateConfig":
        """The gate as ``asdict`` wrote it (``GET /model``'s ``context.gate``, a ``state_dict``)."""
        return cls(float(data["threshold"]), int(data["cooldown_events"]))


# Sensitivity level -> nats added to the model's threshold.
SENSITIVITY_STEPS: dict[str, float] = {"lowest": 2.0, "low": 1.0, "medium": 0.0, "high": -1.0, "highest": -2.0}


@dataclass(frozen=True)
class Sensitivity:
    """A sensitivity level for every service (``default``) and levels of single services (``by_service``)."""

    default: str = "medium"
    by_service: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted({self.default, *self.by_service.values()} - SENSITIVITY_STEPS.keys())
        if unknown:
            raise ValueError(f"unknown sensitivity {', '.join(unknown)}; one of {', '.join(SENSITIVITY_STEPS)}")

    @classmethod
    def parse(cls, default: str = "medium", by_service: str = "") -> "Sensitivity":
        """From ``SENSITIVITY`` and ``SENSITIVITY_BY_SERVICE`` (``"payment=high,search=low"``)."""
        levels = {}
        for item in filter(None, (part.strip() for part in by_service.split(","))):
            service, sep, level = item.rpartition("=")
            if not sep or not service.strip():
                raise ValueError(f"{item!r} is not service=level")
            levels[service.strip()] = level.strip()
        return cls(default.strip(), levels)

    def offset(self, service: str) -> float:
        return SENSITIVITY_STEPS[self.by_service.get(service, self.default)]


def hour_scores(raw_scores: np.ndarray, hour_surprise: np.ndarray) -> np.ndarray:
    """The scores the gate judges: the model's, or the hour-baseline signal's surprisal less ``HOUR_MARGIN``
    where that is higher (``ContextTracker.features``' ``hour_surprise``: 0 where the hour cannot judge yet)."""
    return np.maximum(raw_scores, np.asarray(hour_surprise, dtype=np.float64) - HOUR_MARGIN)


class GateOutput(NamedTuple):
    anomaly: np.ndarray  # bool: raise an alert for this event
    score: np.ndarray  # float: the raw score, never muted (0.0 while the service warms up)
    suppressed: np.ndarray  # bool: in the cool-down after an alert of the same service
    thresholds: list[float]  # what each event was judged against (its service's, lower where quiet)


class AlertGate:
    """One alert per incident: ``score > threshold`` alerts unless the service alerted in its last ``cooldown_events``.

    State: service -> events left in its cool-down. Events of services that are not warm yet
    (``warm=False``) never alert and do not count down.
    """

    def __init__(self, config: GateConfig, sensitivity: Sensitivity | None = None) -> None:
        self.config = config
        self.sensitivity = sensitivity or Sensitivity()
        self.cooldown: dict[str, int] = {}

    def threshold(self, service: str) -> float:
        """The service's threshold: the model's, moved by the service's sensitivity."""
        return self.config.threshold + self.sensitivity.offset(service)

    def decide(
        self,
        services: Sequence[str],
        raw_scores: np.ndarray,
        warm: np.ndarray | None = None,
        quiet: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(anomaly (n,) bool, score (n,) float)`` for a micro-batch in stream order; learns the cool-downs.
        ``quiet``: per event, its service is quiet (``ContextTracker.judge_scores``), so judged lower."""
        output = self.decide_detailed(services, raw_scores, warm, quiet)
        return output.anomaly, output.score

    def decide_detailed(
        self,
        services: Sequence[str],
        raw_scores: np.ndarray,
        warm: np.ndarray | None = None,
        quiet: np.ndarray | None = None,
    ) -> GateOutput:
        scores = np.asarray(raw_scores, dtype=np.float64)
        n = len(scores)
        warm_rows = range(n) if warm is None else np.flatnonzero(warm).tolist()
        cooldown = self.config.cooldown_events
        thresholds = self.thresholds(services, quiet)
        values = scores.tolist()
        left = self.cooldown
        anomaly = [False] * n
        suppressed = [False] * n
        for i in warm_rows:
            name = services[i]
            remaining = left.get(name, 0)
            if remaining > 0:
                left[name] = remaining - 1
                suppressed[i] = True
            elif values[i] > thresholds[i]:
                anomaly[i] = True
                if cooldown:  # without a cool-down (the processor's), nothing to remember per service
                    left[name] = cooldown
        return GateOutput(np.array(anomaly, dtype=bool), scores, np.array(suppressed, dtype=bool), thresholds)

    def thresholds(self, services: Sequence[str], quiet: np.ndarray | None = None) -> list[float]:
        """Each event's threshold, by its service (and ``QUIET_RELIEF`` lower where ``quiet``)."""
        if not self.sensitivity.by_service:
            limits = [self.threshold("")] * len(services)
        else:
            limits = [self.threshold(name) for name in services]
        if quiet is not None:
            limits = [limit - QUIET_RELIEF if q else limit for limit, q in zip(limits, quiet.tolist(), strict=True)]
        return limits

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot: the configuration and every service's remaining cool-down."""
        return {"config": asdict(self.config), "cooldown": {k: v for k, v in self.cooldown.items() if v > 0}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.config = GateConfig.from_dict(state["config"])
        self.cooldown = {str(k): int(v) for k, v in state["cooldown"].items()}
