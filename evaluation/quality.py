"""Alert-level metrics of one scenario, as an on-call operator counts them.

* recall: share of incidents with at least one alert on one of their events;
* precision: share of alerts raised on an event of an incident (an alert on a healthy event is false);
* false-positive rate: alerts on healthy events / healthy events scored (warm services only);
* delay: events of the service from an incident's first event to its first alert (detected incidents).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.scenarios import Incident
from eventbus import LABEL_NORMAL, LogEvent


class AlertQuality:
    """Precision, recall and F1 of a record's alerts against its incidents (mixed into the metrics records)."""

    alerts: int
    true_alerts: int
    incidents: int
    detected: int

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class ScenarioMetrics(AlertQuality):
    name: str
    events: int
    incidents: int
    detected: int
    alerts: int
    true_alerts: int
    normal_events: int
    false_alerts: int
    delays: tuple[int, ...]

    @property
    def false_positive_rate(self) -> float:
        return self.false_alerts / self.normal_events if self.normal_events else 0.0

    @property
    def mean_delay(self) -> float:
        return float(np.mean(self.delays)) if self.delays else float("nan")


def evaluate(
    name: str, events: Sequence[LogEvent], incidents: Sequence[Incident], anomaly: np.ndarray, warm: np.ndarray
) -> ScenarioMetrics:
    """Metrics of one scenario from the per-event alerts (``anomaly``) and warm flags, in stream order."""
    position: dict[str, int] = {}
    service_index = np.empty(len(events), dtype=np.int64)
    for i, event in enumerate(events):
        service_index[i] = position.get(event.service, 0)
        position[event.service] = service_index[i] + 1
    is_normal = np.array([e.label == LABEL_NORMAL for e in events])
    alerts = np.asarray(anomaly, dtype=bool)
    delays = []
    for incident in incidents:
        hit = [
            int(service_index[i]) - incident.start
            for i in np.flatnonzero(alerts).tolist()
            if events[i].service == incident.service
            and incident.start <= service_index[i] < incident.start + incident.length
        ]
        if hit:
            delays.append(min(hit))
    scored_normal = is_normal & np.asarray(warm, dtype=bool)
    return ScenarioMetrics(
        name=name,
        events=len(events),
        incidents=len(incidents),
        detected=len(delays),
        alerts=int(alerts.sum()),
        true_alerts=int((alerts & ~is_normal).sum()),
        normal_events=int(scored_normal.sum()),
        false_alerts=int((alerts & scored_normal).sum()),
        delays=tuple(delays),
    )


def overall(results: Sequence[ScenarioMetrics]) -> ScenarioMetrics:
    """Counts summed over scenarios (micro-average)."""
    return ScenarioMetrics(
        name="overall",
        events=sum(r.events for r in results),
        incidents=sum(r.incidents for r in results),
        detected=sum(r.detected for r in results),
        alerts=sum(r.alerts for r in results),
        true_alerts=sum(r.true_alerts for r in results),
        normal_events=sum(r.normal_events for r in results),
        false_alerts=sum(r.false_alerts for r in results),
        delays=tuple(d for r in results for d in r.delays),
    )
