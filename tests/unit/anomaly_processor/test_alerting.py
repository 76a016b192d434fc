"""What the alerting thread sends: Alertmanager alerts with stable labels, webhook posts once each, retries."""

import threading
import time
from typing import Any

import pytest
from anomaly_processor.alerting import AlertmanagerReceiver, DeliveryError, Notifier, WebhookReceiver

WHY = {"signal": "latency level", "severity": 2.4, "basis": "service", "text": "latency 1,480 ms, usually 190–260 ms"}


def record(event: str, alerts: int = 1, peak: float = 1.5, signal: str = "latency level") -> dict[str, Any]:
    resolved = event == "resolved"
    return {
        "incident_id": "inc-1",
        "event": event,
        "service": "payment",
        "status": "resolved" if resolved else "open",
        "started_at": 1000.0,
        "last_alert_at": 1010.0,
        "resolved_at": 1070.0 if resolved else None,
        "resolution": "recovered" if resolved else None,
        "alerts": alerts,
        "first_event_id": "e1",
        "peak_event_id": "e1",
        "peak_score": 14.0,
        "peak_severity": peak,
        "signal": signal,
        "explanation": {**WHY, "severity": peak},
    }


class Posts:
    """Stands in for ``requests.Session``: keeps what is posted; ``down`` refuses."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any, dict[str, str]]] = []
        self.down = False

    def post(self, url: str, data: bytes, timeout: float, headers: dict[str, str] | None = None) -> Any:
        import orjson
        import requests

        if self.down:
            raise requests.ConnectionError("[Errno 111] Connection refused")
        self.bodies.append((url, orjson.loads(data), headers or {}))
        return type("Response", (), {"status_code": 200, "content": b""})()


def test_an_incident_keeps_its_labels_from_opening_to_resolution() -> None:
    posts = Posts()
    receiver = AlertmanagerReceiver("http://am:9193/", dashboard_url="http://dash", refresh_s=60, session=posts)  # type: ignore[arg-type]
    receiver.add(record("opened", peak=2.4))
    receiver.send(2000.0)
    # The peak's signal and severity change later: the alert's identity does not.
    receiver.add(record("updated", alerts=40, peak=1.2, signal="sustained shift"))
    receiver.send(2001.0)
    receiver.add(record("resolved", alerts=41, peak=1.2))
    receiver.send(2100.0)
    alerts = [body[0] for _, body, _ in posts.bodies]
    assert [a["labels"] for a in alerts] == [alerts[0]["labels"]] * 3
    assert alerts[0]["labels"] == {
        "alertname": "ServiceAnomaly",
        "service": "payment",
        "signal": "latency level",
        "severity": "critical",
        "incident_id": "inc-1",
    }
    assert posts.bodies[0][0] == "http://am:9193/api/v2/alerts"
    assert alerts[0]["endsAt"] > "1970-01-01T00:35" and alerts[0]["annotations"]["explanation"] == WHY["text"]
    assert alerts[2]["endsAt"] == "1970-01-01T00:17:50Z"  # resolved at its event time
    assert receiver.pending(9999.0) == 0  # nothing left to refresh


def test_an_open_incident_is_sent_again_every_refresh() -> None:
    posts = Posts()
    receiver = AlertmanagerReceiver("http://am", dashboard_url="d", refresh_s=60, session=posts)  # type: ignore[arg-type]
    receiver.add(record("opened"))
    receiver.send(100.0)
    assert receiver.pending(159.0) == 0 and receiver.pending(160.0) == 1


def test_the_webhook_gets_opened_and_resolved_once_each() -> None:
    posts = Posts()
    receiver = WebhookReceiver("http://chat/hook", session=posts)  # type: ignore[arg-type]
    for event in ("opened", "updated", "opened", "resolved"):
        receiver.add(record(event))
    receiver.send(0.0)
    receiver.add(record("resolved"))  # e.g. redelivered
    receiver.send(1.0)
    assert [(body["event"], headers["Idempotency-Key"]) for _, body, headers in posts.bodies] == [
        ("opened", "inc-1:opened"),
        ("resolved", "inc-1:resolved"),
    ]


def test_a_receiver_that_is_down_is_retried_and_loses_nothing() -> None:
    posts = Posts()
    posts.down = True
    receiver = WebhookReceiver("http://chat/hook", session=posts)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="Connection refused"):
        receiver.add(record("opened"))
        receiver.send(0.0)
    notifier = Notifier([receiver], backoff_initial_s=0.05, backoff_max_s=0.1)
    try:
        notifier.publish([record("resolved")])
        time.sleep(0.3)
        assert posts.bodies == []
        posts.down = False
        deadline = time.monotonic() + 5
        while len(posts.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [body["event"] for _, body, _ in posts.bodies] == ["opened", "resolved"]
    finally:
        notifier.close(timeout_s=1)
    assert not any(t.name == "incident-alerts" and t.is_alive() for t in threading.enumerate())
