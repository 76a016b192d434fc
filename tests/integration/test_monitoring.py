"""The shipped monitoring/ configuration: valid for promtool and amtool; a real Prometheus scrapes both services."""

import itertools
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from devstack.processes import free_port
from eventbus import KafkaSettings
from streaming_detector.profiles import generate_normal_events
from tests.integration.monitoring import Prometheus, binary
from tests.integration.test_alerting import service_stream
from tests.integration.test_processor_pipeline import (  # noqa: F401 - fixtures used by name
    MLService,
    Processor,
    events_as_messages,
    ml_service,
    model_path,
    produce,
    start_processor,
)

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


@pytest.mark.parametrize(
    "command",
    [
        ["promtool", "check", "config", "prometheus.yml"],
        ["promtool", "test", "rules", "rules_test.yml"],
        ["amtool", "check-config", "alertmanager.yml"],
    ],
    ids=["prometheus-config", "rules-unit-tests", "alertmanager-config"],
)
def test_the_shipped_configuration_is_valid(command: list[str]) -> None:
    result = subprocess.run([binary(command[0]), *command[1:]], cwd=MONITORING, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_scrapes_both_services_and_evaluates_the_rules(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    ml_service: MLService,  # noqa: F811 - the imported fixture
    start_processor: Callable[..., Processor],  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    processor = start_processor(PROCESSOR_METRICS_PORT=str(metrics_port), PRINT_MODE="events")
    history, shift, _ = service_stream("payment", seed=11)
    producer = producer_factory()
    produce(producer, kafka_settings.logs_topic, events_as_messages(history + shift))
    processor.wait_for_output(lambda out: "▲ INCIDENT opened" in out, timeout_s=90)

    # The shipped configuration, pointed at this test's ports and scraping every second.
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(MONITORING / "rules.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{free_port()}"]
    ports = {"anomaly-processor": metrics_port, "ml-service": int(ml_service.url.rsplit(":", 1)[1])}
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{ports[job['job_name']]}"]
    assert set(ports) == {job["job_name"] for job in config["scrape_configs"]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = Prometheus(tmp_path)
    try:
        prometheus.start(tmp_path / "prometheus.yml")
        later = iter(generate_normal_events(3000, services=["search"], seed=12))  # a rate above 0 to see

        def value(expression: str) -> dict[str, float]:
            return {str(r["metric"]): float(r["value"][1]) for r in prometheus.query(expression)}

        deadline = time.monotonic() + 60
        while True:
            up = value("up")
            rate = value("processor:events_consumed:rate1m")
            incidents = value('processor:open_incidents:by_service{service="payment"}')
            if len(up) == 2 and all(v == 1 for v in up.values()) and any(rate.values()) and incidents:
                break
            assert time.monotonic() < deadline, f"up={up} rate={rate} incidents={incidents}\n{prometheus.log()}"
            produce(producer, kafka_settings.logs_topic, events_as_messages(itertools.islice(later, 20)))
            time.sleep(0.2)
        assert list(incidents.values()) == [1.0]
        assert list(rate.values())[0] > 0
        assert value("ml_model_loaded") and list(value("ml_model_loaded").values()) == [1.0]
        assert value("processor:consumer_lag:sum")  # the lag of the logs topic is recorded
        groups = prometheus_rules(prometheus)
        assert groups and all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups
        assert not [a for a in value("ALERTS") if "ProcessorDown" in a or "MLServiceDown" in a]
    finally:
        prometheus.stop()
    assert processor.stop() == 0, processor.diagnostics()


def prometheus_rules(prometheus: Prometheus) -> list[dict]:
    from tests.integration.monitoring import http_json

    groups: list[dict] = http_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    return groups
