"""The live dashboard in a real headless Chromium, fed by a real broker.

A small app serving only the dashboard router runs under uvicorn in its own process, pointed at this
test's topics. Verdicts flow into ``predictions`` at a steady rate (with a few minutes of history
stamped in the past), the page must draw live points, and an anomaly injected after the page loaded
must show up as a red marker and a table row. The screenshot lands in the test's tmp dir, and in
``docs/dashboard.png`` when ``UPDATE_SCREENSHOT=1``.
"""

import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer
from playwright.sync_api import Page, sync_playwright

from eventbus import KafkaSettings, LogEvent, Verdict
from tests.conftest import free_port, read_all

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
# The simulator's default services at its baselines (ms), and scores in nats as the pipeline prints them.
SERVICES = {"auth": 120.0, "payment": 210.0, "orders": 180.0}
HISTORY_S = 240
RATE_PER_SERVICE = 8  # verdicts per second per service, live and in the history
LOGS_BEHIND = 25  # log events the processor group has not committed
DEAD_LETTERED = 3

SERVER = """
import contextlib, sys
import uvicorn
from fastapi import FastAPI
from ml_service.dashboard import router, shutdown_dashboard

@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    shutdown_dashboard()

app = FastAPI(lifespan=lifespan)
app.include_router(router)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", timeout_graceful_shutdown=2)
"""


class VerdictStream:
    """Produces plausible verdicts for a few services at a steady rate in a background thread."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.rng = random.Random(42)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="verdict-stream", daemon=True)

    def verdict(
        self, service: str, at: float, anomaly: bool = False, score: float | None = None, signal: str = "latency"
    ) -> Verdict:
        base = SERVICES[service]
        wave = 1 + 0.15 * math.sin(at / 40 + base)  # gentle drift so the lines are not flat
        latency, error = max(1.0, self.rng.gauss(base * wave, base * 0.12)), max(0.0, self.rng.gauss(0.01, 0.004))
        if anomaly and signal == "latency":
            latency = base * self.rng.uniform(6, 11)
        elif anomaly:
            error = self.rng.uniform(0.15, 0.35)
        self.sent += 1
        return Verdict(
            event_id=f"{service}-{uuid.uuid4().hex[:12]}",
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
            event_time=at,
            service=service,
            latency_ms=round(latency, 2),
            error_rate=round(min(error, 1.0), 4),
            label=("latency_spike" if signal == "latency" else "error_burst") if anomaly else "normal",
            anomaly=anomaly,
            score=score if score is not None else round(self.rng.uniform(1.0, 6.0), 4),
            model_version="test-model",
        )

    def send(self, verdict: Verdict, at: float) -> None:
        self.producer.send(
            self.topic, key=verdict.service.encode(), value=verdict.to_json(), timestamp_ms=int(at * 1000)
        )

    def send_history(self, now: float) -> None:
        """A few minutes of past traffic, stamped in the past, with a handful of anomalies in it."""
        spikes = {
            (service, int(now) - ago): signal
            for service, ago, signal in [
                ("orders", 200, "latency"),
                ("payment", 130, "error"),
                ("auth", 70, "latency"),
                ("orders", 40, "error"),
            ]
        }
        for second in range(int(now) - HISTORY_S, int(now)):
            for service in SERVICES:
                for i in range(RATE_PER_SERVICE):
                    at = second + i / RATE_PER_SERVICE
                    signal = spikes.get((service, second)) if i == 0 else None
                    spike = self.verdict(service, at, anomaly=True, score=11.5, signal=signal) if signal else None
                    self.send(spike or self.verdict(service, at), at)
        self.producer.flush(30)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.producer.flush(10)

    def _run(self) -> None:
        """Keeps to the rate by schedule, so a busy machine sends late rather than less."""
        services = list(SERVICES)
        rate = RATE_PER_SERVICE * len(services)
        started = time.monotonic()
        sent = 0
        while not self._stop.wait(0.05):
            due = int((time.monotonic() - started) * rate)
            for index in range(sent, due):
                now = time.time()
                self.send(self.verdict(services[index % len(services)], now), now)
            sent = max(sent, due)


@pytest.fixture
def processor_group() -> str:
    return f"processor-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def dashboard_url(kafka_env: dict[str, str], processor_group: str) -> Iterator[str]:
    port = free_port()
    env = {
        **kafka_env,
        "PROCESSOR_GROUP": processor_group,
        "DASHBOARD_IDLE_GRACE_S": "1",
        "DASHBOARD_LAG_INTERVAL_S": "1",
    }
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}/dashboard"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, "the dashboard app exited early"
            try:
                if httpx.get(f"{url}/api/snapshot", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the dashboard app did not answer within 30s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Page]:
    # `make test` installs it (target `browser`): a missing browser is a failure, not a skip.
    assert CHROMIUM.exists(), "Debian's chromium is not installed: run `make browser` (apt-get install -y chromium)"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _leave_the_processor_behind(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
    processor_group: str,
) -> None:
    """The processor's group commits 10 log events, then 25 more arrive: its lag is 25."""
    producer = producer_factory()

    def send_logs(count: int) -> None:
        for i in range(count):
            event = LogEvent(
                event_id=uuid.uuid4().hex,
                timestamp="2024-01-01T00:00:00Z",
                service="auth",
                latency_ms=100.0 + i,
                error_rate=0.01,
            )
            producer.send(kafka_settings.logs_topic, key=event.key(), value=event.to_json())
        producer.flush(10)

    send_logs(10)
    group = consumer_factory(kafka_settings.logs_topic, group_id=processor_group)
    assert len(read_all(group, expected=10)) == 10
    group.commit()
    send_logs(LOGS_BEHIND)
    for i in range(DEAD_LETTERED):
        producer.send(kafka_settings.dlq_topic, value=b'{"reason": "not JSON", "raw": "%d"}' % i)
    producer.flush(10)


def test_live_dashboard_marks_an_injected_anomaly(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    consumer_factory: Callable[..., KafkaConsumer],
    processor_group: str,
    dashboard_url: str,
    browser_page: Page,
    tmp_path: Path,
) -> None:
    page = browser_page
    _leave_the_processor_behind(kafka_settings, producer_factory, consumer_factory, processor_group)
    stream = VerdictStream(producer_factory(linger_ms=20), kafka_settings.predictions_topic)
    stream.start()
    try:
        stream.send_history(time.time())
        # Nobody watches yet: the Kafka feed has not started.
        assert httpx.get(f"{dashboard_url}/api/snapshot").json()["feed"]["state"] == "idle"

        page.goto(dashboard_url)
        page.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="live-points"]')]
                   .filter(e => Number(e.dataset.points) > 0).length >= 3""",
            timeout=30_000,
        )

        # An anomaly that happens while the page is open.
        injected = stream.verdict("payment", time.time(), anomaly=True, score=12.873)
        stream.send(injected, time.time())
        stream.producer.flush(10)

        marker = page.locator(f'[data-testid="anomaly-marker"][data-event-id="{injected.event_id}"]')
        marker.first.wait_for(state="attached", timeout=15_000)
        assert marker.first.get_attribute("data-service") == "payment"
        assert float(marker.first.get_attribute("data-score")) == pytest.approx(12.873)
        # One dot, on the signal that triggered: its latency was out of the service's band, its error rate not.
        assert marker.count() == 1
        assert marker.first.evaluate("e => e.closest('svg').dataset.chart") == "latency"

        row = page.locator(f'[data-testid="anomaly-row"][data-event-id="{injected.event_id}"]')
        row.wait_for(timeout=10_000)
        assert row.get_attribute("data-service") == "payment"
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == "payment"
        assert cells[4] == "12.873"
        assert cells[5] == "latency_spike"
        # The history's anomalies are in the table too, newest first across services.
        rows = page.locator('[data-testid="anomaly-row"]')
        assert rows.count() >= 5
        times = [float(t) for t in rows.evaluate_all("rows => rows.map(r => r.dataset.t)")]
        assert times == sorted(times, reverse=True)
        assert rows.first.get_attribute("data-event-id") == injected.event_id
        # The history's error bursts are dotted on the error-rate chart only.
        charts = page.locator('[data-testid="anomaly-marker"]').evaluate_all(
            "dots => dots.map(d => [d.dataset.service, d.closest('svg').dataset.chart])"
        )
        assert ["payment", "error-rate"] in charts and ["orders", "error-rate"] in charts
        assert ["auth", "latency"] in charts and ["auth", "error-rate"] not in charts

        page.wait_for_function(
            """([lag, dead]) => {
                const text = (id) => document.querySelector(`[data-testid="${id}"]`).textContent;
                return text("counter-consumer-lag") === lag && text("counter-dead-lettered") === dead;
            }""",
            arg=[str(LOGS_BEHIND), str(DEAD_LETTERED)],
            timeout=15_000,
        )
        assert page.locator('[data-testid="feed-status"]').inner_text() == "live"
        events_per_s = float(page.locator('[data-testid="counter-events-per-s"]').inner_text().replace(",", ""))
        assert events_per_s > 0

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            (REPO / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, REPO / "docs" / "dashboard.png")
    finally:
        stream.stop()

    # The last viewer leaves: after the grace period the Kafka feed stops again.
    page.close()
    deadline = time.monotonic() + 20
    while httpx.get(f"{dashboard_url}/api/snapshot").json()["feed"]["state"] != "idle":
        assert time.monotonic() < deadline, "the dashboard's Kafka feed kept running with nobody watching"
        time.sleep(0.3)
