"""The docker compose file: ZooKeeper + Kafka as in the original design, pinned to images that still start."""

import shutil
import subprocess
from pathlib import Path

import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[3] / "kafka-docker" / "docker-compose.yml"


def test_images_are_pinned_to_a_zookeeper_capable_release() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert set(services) == {"zookeeper", "kafka"}
    for service in services.values():
        image, _, tag = service["image"].partition(":")
        assert image.startswith("confluentinc/cp-")
        # Confluent Platform 8 (Apache Kafka 4) is KRaft-only: ZooKeeper mode needs 7.x.
        assert tag.startswith("7.9."), service["image"]
        assert "healthcheck" in service


def test_kafka_listens_on_localhost_9092_and_waits_for_a_healthy_zookeeper() -> None:
    kafka = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["kafka"]
    assert "PLAINTEXT_HOST://localhost:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["environment"]["KAFKA_ZOOKEEPER_CONNECT"] == "zookeeper:2181"
    assert kafka["depends_on"]["zookeeper"]["condition"] == "service_healthy"
    assert any(str(port).endswith("9092:9092") for port in kafka["ports"])


def test_compose_cli_accepts_the_file_when_a_compose_client_is_installed() -> None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        # No client: the structural checks above are what can be verified here.
        command = []
    if command:
        result = subprocess.run([*command, "-f", str(COMPOSE_FILE), "config"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "cp-kafka:7.9" in result.stdout
