"""The dashboard's HTTP side without Kafka: the page, its assets, the snapshot and the SSE stream's first message."""

import re
import time
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ml_service.dashboard import DashboardSettings, LiveWindow, get_feed, router

from eventbus import Verdict


class PrefilledFeed:
    """A feed whose window is filled by the test; counts the clients that watch it."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.window = LiveWindow(window_s=settings.dashboard_window_s)
        self.acquired = 0
        self.released = 0

    def acquire(self) -> None:
        self.acquired += 1

    def release(self) -> None:
        self.released += 1

    def status(self) -> dict[str, Any]:
        return {"state": "live", "detail": "test", "subscribers": self.acquired - self.released}


@pytest.fixture
def feed() -> PrefilledFeed:
    settings = DashboardSettings(dashboard_push_interval_s=0.05, dashboard_stream_max_s=0.3)
    feed = PrefilledFeed(settings)
    now = time.time()
    feed.window.add_verdicts(
        [
            (now - 3, _verdict("auth", 120.0, anomaly=False, score=-0.2, event_id="n1")),
            (now - 2, _verdict("auth", 2400.0, anomaly=True, score=0.61, event_id="spike-1")),
        ]
    )
    return feed


@pytest.fixture
def client(feed: PrefilledFeed) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_feed] = lambda: feed
    return TestClient(app)


def _verdict(service: str, latency: float, anomaly: bool, score: float, event_id: str) -> Verdict:
    return Verdict(
        event_id=event_id,
        timestamp="2024-01-01T00:00:00+00:00",
        service=service,
        latency_ms=latency,
        error_rate=0.02,
        label="latency_spike" if anomaly else "normal",
        anomaly=anomaly,
        score=score,
        model_version="test",
    )


def _data_messages(body: str) -> list[dict[str, Any]]:
    return [orjson.loads(block[len("data: ") :]) for block in body.split("\n\n") if block.startswith("data: ")]


def test_stream_opens_with_a_full_snapshot_then_updates(client: TestClient, feed: PrefilledFeed) -> None:
    with client.stream("GET", "/dashboard/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()

    assert body.startswith("retry: ")
    messages = _data_messages(body)
    first = messages[0]
    assert first["type"] == "snapshot"
    rows = [dict(zip(first["fields"], row, strict=True)) for row in first["series"]["auth"]]
    assert sum(r["count"] for r in rows) == 2
    assert [r["anomaly_event_id"] for r in rows if r["anomalies"]] == ["spike-1"]
    assert [(a["event_id"], a["service"], a["score"]) for a in first["anomalies"]] == [("spike-1", "auth", 0.61)]
    assert first["counters"]["anomalies_in_window"] == 1
    assert first["feed"]["state"] == "live"
    # Later messages are deltas: nothing changed, so they carry no series and no anomalies.
    assert len(messages) >= 2
    assert all(m["type"] == "update" and m["series"] == {} and m["anomalies"] == [] for m in messages[1:])
    # The stream held the feed while open and gave it back when it ended.
    assert (feed.acquired, feed.released) == (1, 1)


def test_snapshot_reads_without_starting_the_feed(client: TestClient, feed: PrefilledFeed) -> None:
    response = client.get("/dashboard/api/snapshot")
    assert response.status_code == 200
    snapshot = response.json()
    assert snapshot["type"] == "snapshot"
    assert [a["event_id"] for a in snapshot["anomalies"]] == ["spike-1"]
    assert feed.acquired == 0


def test_page_and_assets_are_served_and_load_nothing_from_elsewhere(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert 'data-base="/dashboard"' in page.text
    references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/dashboard/static/dashboard.js" in references
    assert all(ref.startswith(("/dashboard/", "data:")) for ref in references)
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = client.get(f"/dashboard/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
        assert "http://" not in asset.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in asset.text
    assert client.get("/dashboard/static/../feed.py").status_code == 404
    assert client.get("/dashboard/static/secrets.txt").status_code == 404
