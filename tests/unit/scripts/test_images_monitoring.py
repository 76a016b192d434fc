"""The monitoring in the full-stack compose: Prometheus's targets and Alertmanager are the compose services."""

from pathlib import Path

import yaml

from scripts.images import COMPOSE_ALERTMANAGER, COMPOSE_TARGETS, compose_prometheus_config

STAGING = Path(__file__).resolve().parents[3] / "staging"


def test_prometheus_in_compose_scrapes_every_job_of_monitoring_at_its_service() -> None:
    config = yaml.safe_load(compose_prometheus_config())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {"anomaly-processor": ["processor:9108"], "ml-service": ["ml-service:8000"]}
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]
    assert config["rule_files"] == ["rules.yml"]  # copied beside it into the image


def test_the_targets_are_services_of_the_stack_on_their_container_ports() -> None:
    services = yaml.safe_load((STAGING / "compose.yml").read_text())["services"]
    for target in [*COMPOSE_TARGETS.values(), COMPOSE_ALERTMANAGER]:
        name, port = target.split(":")
        assert name in services
        published = [p for p in services[name]["ports"] if p.endswith(f":{port}")]
        assert published, f"{name} does not publish its port {port}"
    assert services["processor"]["environment"]["ALERTMANAGER_URL"] == "${ALERTMANAGER_URL:-http://alertmanager:9093}"
