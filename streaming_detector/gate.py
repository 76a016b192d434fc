"""The alert gate: per-service alert decisions from raw context scores, with a cool-down."""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np


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


class GateOutput(NamedTuple):
    anomaly: np.ndarray  # bool: raise an alert for this event
    score: np.ndarray  # float: the raw score, never muted (0.0 while the service warms up)
    suppressed: np.ndarray  # bool: in the cool-down after an alert of the same service


class AlertGate:
    """One alert per incident: ``score > threshold`` alerts unless the service alerted in its last ``cooldown_events``.

    State: service -> events left in its cool-down. Events of services that are not warm yet
    (``warm=False``) never alert and do not count down.
    """

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self.cooldown: dict[str, int] = {}

    def decide(
        self, services: Sequence[str], raw_scores: np.ndarray, warm: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(anomaly (n,) bool, score (n,) float)`` for a micro-batch in stream order; learns the cool-downs."""
        output = self.decide_detailed(services, raw_scores, warm)
        return output.anomaly, output.score

    def decide_detailed(
        self, services: Sequence[str], raw_scores: np.ndarray, warm: np.ndarray | None = None
    ) -> GateOutput:
        scores = np.asarray(raw_scores, dtype=np.float64)
        n = len(scores)
        warm_rows = range(n) if warm is None else np.flatnonzero(warm).tolist()
        threshold, cooldown = self.config.threshold, self.config.cooldown_events
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
            elif values[i] > threshold:
                anomaly[i] = True
                if cooldown:  # without a cool-down (the processor's), nothing to remember per service
                    left[name] = cooldown
        return GateOutput(np.array(anomaly, dtype=bool), scores, np.array(suppressed, dtype=bool))

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot: the configuration and every service's remaining cool-down."""
        return {"config": asdict(self.config), "cooldown": {k: v for k, v in self.cooldown.items() if v > 0}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.config = GateConfig.from_dict(state["config"])
        self.cooldown = {str(k): int(v) for k, v in state["cooldown"].items()}
