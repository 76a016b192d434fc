"""The dashboard's Kafka feed when no broker answers: it reports the condition, retries, and still stops when idle."""

import time

from ml_service.dashboard import DashboardSettings, LiveFeed

from eventbus import KafkaSettings
from tests.conftest import free_port


def test_feed_reports_a_missing_broker_and_stops_once_nobody_watches() -> None:
    nobody_listens = f"127.0.0.1:{free_port()}"
    feed = LiveFeed(KafkaSettings(kafka_bootstrap_servers=nobody_listens), DashboardSettings(dashboard_idle_grace_s=0))
    assert not feed.running and feed.status()["state"] == "idle"

    feed.acquire()
    try:
        deadline = time.monotonic() + 30
        while feed.status()["state"] != "broker_unavailable":
            assert time.monotonic() < deadline, f"feed state stayed {feed.status()['state']!r}"
            time.sleep(0.1)
        assert nobody_listens in feed.status()["detail"]
        assert feed.running  # still retrying while someone watches
    finally:
        feed.release()

    deadline = time.monotonic() + 15
    while feed.running:
        assert time.monotonic() < deadline, "the feed kept retrying with nobody watching"
        time.sleep(0.1)
    assert feed.status()["state"] == "idle"
