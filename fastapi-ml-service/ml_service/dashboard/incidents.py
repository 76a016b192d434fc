"""Open and recent incidents for the dashboard, from the processor's ``INCIDENTS_TOPIC`` records.

Each record carries its incident's whole state, so the board keeps the latest record per incident: every
open one, and the last ``max_recent`` resolved ones.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from eventbus import Incident

MAX_OPEN = 200  # open incidents shown at most (one per service at a time)


def _entry(incident: Incident) -> dict[str, Any]:
    why = incident.explanation
    return {
        "incident_id": incident.incident_id,
        "service": incident.service,
        "status": incident.status,
        "started_at": incident.started_at,
        "last_alert_at": incident.last_alert_at,
        "resolved_at": incident.resolved_at,
        "resolution": incident.resolution,
        "alerts": incident.alerts,
        "peak_severity": incident.peak_severity,
        "signal": incident.signal,
        "why": why.text if why is not None else incident.signal,
    }


class IncidentBoard:
    """Thread-safe: the feed thread adds records, the web routes read ``view()``."""

    def __init__(self, max_recent: int = 20) -> None:
        self.max_recent = max_recent
        self._lock = threading.Lock()
        self._open: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, incidents: Iterable[Incident]) -> None:
        with self._lock:
            for incident in incidents:
                entry = _entry(incident)
                key = incident.incident_id
                if incident.status == "open":
                    if key not in self._recent:  # a late "updated" after its resolution changes nothing
                        self._open[key] = entry
                        self._open.move_to_end(key)
                        while len(self._open) > MAX_OPEN:
                            self._open.popitem(last=False)
                else:
                    self._open.pop(key, None)
                    self._recent[key] = entry
                    self._recent.move_to_end(key)
                    while len(self._recent) > self.max_recent:
                        self._recent.popitem(last=False)

    def view(self) -> dict[str, list[dict[str, Any]]]:
        """``{"open": [...], "recent": [...]}``, newest first."""
        with self._lock:
            return {"open": list(reversed(self._open.values())), "recent": list(reversed(self._recent.values()))}

    def clear(self) -> None:
        with self._lock:
            self._open.clear()
            self._recent.clear()
