"""The dashboard's incidents: open and recent from ``incidents`` records, in the snapshot beside the window."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from ml_service.dashboard import DashboardSettings, LiveWindow, get_feed, router
from ml_service.dashboard.incidents import IncidentBoard

from eventbus import Incident

WHY = {
    "signal": "latency level",
    "observed": 1480.0,
    "expected": 221.0,
    "low": 190.0,
    "high": 260.0,
    "unit": "ms",
    "severity": 1.62,
    "basis": "service",
    "text": "latency 1,480 ms, usually 190–260 ms",
}


def record(incident: str, event: str, service: str = "payment", alerts: int = 1) -> Incident:
    resolved = event == "resolved"
    return Incident(
        incident_id=incident,
        event=event,  # type: ignore[arg-type]
        service=service,
        status="resolved" if resolved else "open",
        started_at=1000.0,
        last_alert_at=1010.0,
        resolved_at=1070.0 if resolved else None,
        resolution="recovered" if resolved else None,
        alerts=alerts,
        first_event_id="e1",
        peak_event_id="e7",
        peak_score=14.6,
        peak_severity=1.62,
        signal="latency level",
        explanation=WHY,  # type: ignore[arg-type]
    )


def test_the_board_keeps_the_latest_state_of_each_incident() -> None:
    board = IncidentBoard(max_recent=2)
    board.add([record("a", "opened"), record("b", "opened", "auth"), record("a", "updated", alerts=9)])
    view = board.view()
    assert [(i["incident_id"], i["alerts"]) for i in view["open"]] == [("a", 9), ("b", 1)]
    assert view["open"][0]["why"] == "latency 1,480 ms, usually 190–260 ms"
    board.add([record("a", "resolved", alerts=12), record("a", "updated", alerts=12)])  # a late update: still resolved
    board.add([record("c", "opened"), record("c", "resolved"), record("b", "resolved", "auth")])
    view = board.view()
    assert view["open"] == []
    assert [i["incident_id"] for i in view["recent"]] == ["b", "c"]  # the oldest resolved one left


class Feed:
    def __init__(self) -> None:
        self.settings = DashboardSettings()
        self.window = LiveWindow(window_s=60)
        self.incidents = IncidentBoard()

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def status(self) -> dict[str, Any]:
        return {"state": "live", "detail": "test", "subscribers": 0}


def test_the_snapshot_carries_the_incidents() -> None:
    feed = Feed()
    feed.incidents.add([record("inc-1", "opened")])
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_feed] = lambda: feed
    body = TestClient(app).get("/dashboard/api/snapshot").json()
    assert [i["incident_id"] for i in body["incidents"]["open"]] == ["inc-1"]
    assert body["incidents"]["recent"] == []
