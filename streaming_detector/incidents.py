"""Incidents: a service's consecutive alerts grouped into one, opened, updated and resolved.

Every alert-worthy verdict stays ``anomaly: true`` (nothing is muted); it gets the ``incident_id`` of its
service's open incident, or opens one. An incident is resolved when its service has been normal for
``resolve_after_s`` of event time and at least ``resolve_events`` events since its last alert (a fast
service and a service replayed at five-minute steps both need both; an event scored in its service's context
at ``hold_score`` or more, close below the threshold, is not yet normal: it restarts that count), or, by the wall clock,
when its service has sent nothing for ``idle_resolve_s`` (a service that stopped would otherwise keep it open forever).

An alert of a service still warming up (scored by the point model against all services' data, before the
service has a normal of its own) stays ``anomaly: true`` but opens no incident: about one in a hundred
ordinary events is above the point model's threshold, so each new service would page now and then.

Pure computation over verdicts, so the processor and ``make eval`` group alerts, and count pages, the same
way. The processor produces the records (``eventbus.Incident`` as dicts) to ``INCIDENTS_TOPIC`` in the same
delivery as the batch's verdicts, before its offsets are committed. The id is derived from the service and
the first alert's event id, so a batch handled again after a failed delivery opens the same incident. State
is in memory: after a restart or a rebalance an incident still open is forgotten (its alert in Alertmanager
expires, see ``anomaly_processor.alerting``) and a continuing anomaly opens a new one.
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from streaming_detector.scorer import Score

# Alerts remembered by event id, so a redelivered alert keeps its incident and does not count twice.
SEEN_ALERTS = 20_000
# How often the wall-clock idle resolution looks at the open incidents.
IDLE_CHECK_S = 1.0
# Defaults of the processor's INCIDENT_RESOLVE_S and INCIDENT_RESOLVE_EVENTS (make eval groups with them too).
RESOLVE_AFTER_S = 20.0
RESOLVE_EVENTS = 10
# An open incident's events scored this high or more (nats, 2 below the model's threshold) keep it open: a series
# hovering just below the threshold after an alert has not recovered (NAB: 517 -> 397 pages, docs/tuning.md). In
# nats, not relative to a service's threshold: at a higher sensitivity, incidents held longer absorbed real ones.
HOLD_SCORE = 7.0


class TimedEvent(Protocol):
    """What incidents read of an event (``eventbus.LogEvent`` has it)."""

    @property
    def event_id(self) -> str | None: ...

    @property
    def service(self) -> str: ...

    @property
    def event_time(self) -> float | None: ...


E = TypeVar("E", bound=TimedEvent)


def event_seconds(event: TimedEvent) -> float:
    """The event's time in epoch seconds (its ``event_time``; the processor's clock if it has none)."""
    seconds = event.event_time
    return time.time() if seconds is None else seconds


def incident_id(service: str, first_event_id: str) -> str:
    return "inc-" + hashlib.sha256(f"{service}\0{first_event_id}".encode()).hexdigest()[:16]


@dataclass
class OpenIncident:
    incident_id: str
    service: str
    started_at: float
    last_alert_at: float
    first_event_id: str
    peak_event_id: str
    peak_score: float
    peak_severity: float
    signal: str
    explanation: dict[str, Any] | None
    alerts: int = 1
    normal_since_alert: int = 0  # normal events since the last alert
    last_seen: float = 0.0  # wall clock of the service's last event
    changed: bool = False  # alerts since the last record

    def record(self, event: str, resolved_at: float | None = None, resolution: str | None = None) -> dict[str, Any]:
        """The ``eventbus.Incident`` record, as a dict."""
        return {
            "incident_id": self.incident_id,
            "event": event,
            "service": self.service,
            "status": "resolved" if resolution else "open",
            "started_at": self.started_at,
            "last_alert_at": self.last_alert_at,
            "resolved_at": resolved_at,
            "resolution": resolution,
            "alerts": self.alerts,
            "first_event_id": self.first_event_id,
            "peak_event_id": self.peak_event_id,
            "peak_score": self.peak_score,
            "peak_severity": self.peak_severity,
            "signal": self.signal,
            "explanation": self.explanation,
        }


def _warming_up(score: Score) -> bool:
    """Judged by the point model against all services' data: marked, but no incident (see the module's doc)."""
    return score.explanation is not None and score.explanation["basis"] == "all services"


def _holds(score: Score, hold_score: float) -> bool:
    """Scored in its service's context close enough below the threshold to keep an open incident open."""
    why = score.explanation
    return why is not None and why["basis"] == "service" and score.score >= hold_score


def _severity(score: Score) -> float:
    return float(score.explanation["severity"]) if score.explanation else score.score


class IncidentTracker:
    """Per service, the open incident; ``observe`` a batch of verdicts in stream order, get the records."""

    def __init__(
        self,
        resolve_after_s: float = RESOLVE_AFTER_S,
        resolve_events: int = RESOLVE_EVENTS,
        idle_resolve_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        hold_score: float = HOLD_SCORE,
    ) -> None:
        self.resolve_after_s = resolve_after_s
        self.resolve_events = resolve_events
        self.hold_score = hold_score
        self.idle_resolve_s = idle_resolve_s
        self._clock = clock
        self.open: dict[str, OpenIncident] = {}
        self._seen: dict[str, str] = {}  # alert event id -> incident id
        self._last_idle_check = 0.0

    def observe(self, verdicts: Sequence[tuple[E, Score]]) -> tuple[list[tuple[E, Score]], list[dict]]:
        """The verdicts with ``incident_id`` on alerts, and the incident records this batch caused, in order."""
        now = self._clock()
        records = self.expire(now)
        out: list[tuple[E, Score]] = []
        open_ = self.open
        for event, score in verdicts:
            incident = open_.get(event.service)
            if not score.anomaly or _warming_up(score):
                if incident is not None:
                    incident.last_seen = now
                    if _holds(score, self.hold_score):
                        incident.normal_since_alert = 0
                        out.append((event, score))
                        continue
                    incident.normal_since_alert += 1
                    if incident.normal_since_alert >= self.resolve_events:
                        at = event_seconds(event)
                        if at - incident.last_alert_at >= self.resolve_after_s:
                            records.append(incident.record("resolved", at, "recovered"))
                            del open_[event.service]
                out.append((event, score))
                continue
            event_id = event.event_id
            if event_id is None:  # the pipeline gives every event one
                raise ValueError(f"incidents need events with an event_id: {event!r:.200}")
            known = self._seen.get(event_id)
            if known is not None:  # handled before (a batch redelivered): same incident, counted once
                out.append((event, score._replace(incident_id=known)))
                continue
            at = event_seconds(event)
            if incident is None:
                why = score.explanation
                incident = OpenIncident(
                    incident_id(event.service, event_id),
                    event.service,
                    at,
                    at,
                    event_id,
                    event_id,
                    score.score,
                    _severity(score),
                    why["signal"] if why else "score",
                    why,
                    last_seen=now,
                )
                open_[event.service] = incident
                records.append(incident.record("opened"))
            else:
                incident.alerts += 1
                incident.last_alert_at = max(incident.last_alert_at, at)
                incident.normal_since_alert = 0
                incident.last_seen = now
                incident.changed = True
                if score.score > incident.peak_score:
                    incident.peak_score = score.score
                    incident.peak_severity = _severity(score)
                    incident.peak_event_id = event_id
                    incident.explanation = score.explanation
            self._remember(event_id, incident.incident_id)
            out.append((event, score._replace(incident_id=incident.incident_id)))
        for incident in open_.values():
            if incident.changed:
                incident.changed = False
                records.append(incident.record("updated"))
        return out, records

    def expire(self, now: float | None = None) -> list[dict]:
        """Resolve (``idle``) the incidents of services that sent nothing for ``idle_resolve_s`` of wall clock."""
        now = self._clock() if now is None else now
        if now - self._last_idle_check < IDLE_CHECK_S:
            return []
        self._last_idle_check = now
        idle = [service for service, incident in self.open.items() if now - incident.last_seen >= self.idle_resolve_s]
        return [self.open.pop(service).record("resolved", now, "idle") for service in idle]

    def _remember(self, event_id: str, incident: str) -> None:
        self._seen[event_id] = incident
        if len(self._seen) > SEEN_ALERTS:
            del self._seen[next(iter(self._seen))]
