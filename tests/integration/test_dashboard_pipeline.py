"""The dashboard with the whole pipeline running: simulator -> Kafka -> processor -> ML service -> dashboard.

Nothing is faked: the simulator injects labelled latency spikes, the processor scores every event in its
service's context through the real ML service, and the page that service serves must draw live points
and mark an anomaly that the pipeline itself flagged on an injected spike.
"""

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families

from devstack.harness import MLServiceProcess, ProcessorProcess, kafka_env, train_model
from eventbus import KafkaSettings
from tests.integration.test_dashboard_browser import REPO, browser_page  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def test_dashboard_shows_what_the_running_pipeline_flags(
    kafka_settings: KafkaSettings,
    browser_page: Page,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    env = kafka_env(kafka_settings)
    group = f"dashboard-{tmp_path.name}"
    # The service's dashboard reads the same topics, and the processor's group for the consumer lag.
    dashboard_env = {k: env[k] for k in env if k.startswith(("KAFKA", "LOGS", "PREDICTIONS", "DLQ"))}
    ml = MLServiceProcess(train_model(tmp_path), tmp_path, PROCESSOR_GROUP=group, **dashboard_env)
    processor = ProcessorProcess(env, tmp_path, group=group, scorer_url=ml.url, name="processor")
    simulator_log = tmp_path / "simulator.log"
    simulator = None
    try:
        ml.start()
        processor.start()
        with simulator_log.open("wb") as sink:
            simulator = subprocess.Popen(
                [
                    sys.executable,
                    "main.py",
                    "--rate",
                    "60",
                    "--duration",
                    "90",
                    "--seed",
                    "11",
                    "--anomaly-rate",
                    "0.02",
                    "--anomalies",
                    "spike",
                    "--quiet",
                ],
                cwd=REPO / "log-simulator",
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        page = browser_page
        page.goto(f"{ml.url}/dashboard")
        page.wait_for_function(
            """() => [...document.querySelectorAll('[data-testid="live-points"]')]
                   .filter(e => Number(e.dataset.points) > 0).length >= 3""",
            timeout=45_000,
        )
        # A row for an anomaly the pipeline flagged on an event the simulator labelled as an injected spike.
        spike_row = page.locator('[data-testid="anomaly-row"]', has_text="latency_spike")
        spike_row.first.wait_for(timeout=60_000)
        service = spike_row.first.get_attribute("data-service")
        assert service in {"auth", "payment", "orders"}
        # The charts mark each second that holds an anomaly (one marker per second, naming one of its events).
        marker = page.locator(f'[data-testid="anomaly-marker"][data-service="{service}"]')
        marker.first.wait_for(state="attached", timeout=15_000)
        page.wait_for_function(
            """() => Number(document.querySelector('[data-testid="counter-events-per-s"]')
                         .textContent.replace(/,/g, '')) > 0""",
            timeout=15_000,
        )
        # Consumer lag is the processor group's: a number once it has committed, not a dash.
        page.wait_for_function(
            """() => /^[0-9,]+$/.test(document.querySelector('[data-testid="counter-consumer-lag"]').textContent)""",
            timeout=15_000,
        )

        # The service's /metrics is Prometheus text, and counts the rows the processor sent it.
        with urllib.request.urlopen(f"{ml.url}/metrics", timeout=10) as answer:
            families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
        rows = sum(sample.value for sample in families["ml_rows_scored"].samples if sample.name.endswith("_total"))
        assert rows > 0

        shot = tmp_path / "dashboard-pipeline.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, REPO / "docs" / "dashboard.png")
    finally:
        if simulator is not None and simulator.poll() is None:
            simulator.terminate()
            simulator.wait(timeout=30)
        processor.terminate()
        ml.terminate()
