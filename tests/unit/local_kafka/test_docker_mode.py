"""Which broker ``make kafka-up`` starts: the project's KRaft image under Docker, or the local broker, and why."""

from pathlib import Path

import pytest
import yaml
from local_kafka.broker import BrokerError
from local_kafka.cli import NO_IMAGE, Choice, choose, fallback_note
from local_kafka.docker import KRAFT, ZOOKEEPER, Compose

ENGINE_DOWN = "no Docker engine answers: Cannot connect to the Docker daemon at unix:///var/run/docker.sock"


def never() -> bool:
    raise AssertionError("this check must not run")


def test_auto_runs_the_project_image_when_the_engine_answers_and_the_image_is_built() -> None:
    assert choose("auto", lambda: None, lambda: True) == Choice("docker")


def test_auto_falls_back_without_an_engine_and_does_not_look_for_the_image() -> None:
    assert choose("auto", lambda: ENGINE_DOWN, never) == Choice("local", ENGINE_DOWN)


def test_auto_falls_back_when_the_image_is_not_built() -> None:
    assert choose("auto", lambda: None, lambda: False) == Choice("local", NO_IMAGE)


def test_local_asks_docker_nothing() -> None:
    assert choose("local", never, never) == Choice("local")


def test_docker_mode_without_the_image_is_an_error_naming_make_images() -> None:
    with pytest.raises(BrokerError, match=r"KAFKA_MODE=docker, but the log-pipeline/kafka:latest image is not built"):
        choose("docker", lambda: None, lambda: False)
    with pytest.raises(BrokerError, match=r"run `make images` first, or run with KAFKA_MODE=local"):
        choose("docker", lambda: None, lambda: False)


def test_docker_mode_without_an_engine_is_an_error_saying_to_start_it() -> None:
    with pytest.raises(BrokerError, match=r"but no Docker engine answers: .* — start the Docker engine"):
        choose("docker", lambda: ENGINE_DOWN, never)
    assert choose("docker", lambda: None, lambda: True) == Choice("docker")


def test_the_zookeeper_compose_stays_an_explicit_choice_that_needs_no_project_image() -> None:
    assert choose("docker-zookeeper", lambda: None, never) == Choice("docker-zookeeper")
    with pytest.raises(BrokerError, match="KAFKA_MODE=docker-zookeeper, but no Docker engine answers"):
        choose("docker-zookeeper", lambda: ENGINE_DOWN, never)


@pytest.mark.parametrize(
    ("why", "how"),
    [
        (ENGINE_DOWN, "start the Docker engine, `make images`, then `make kafka-down kafka-up`"),
        (NO_IMAGE, "`make images`, then `make kafka-down kafka-up`"),
        ("Docker could not start it: docker-compose 1.29.2 up failed: boom", "fix that"),
    ],
)
def test_the_fallback_is_one_line_with_why_and_how_to_get_docker_mode(why: str, how: str) -> None:
    note = fallback_note(why)
    assert "\n" not in note
    assert note.startswith(f"Kafka: using the local KRaft broker ({why}; for Docker mode: ")
    assert how in note


def test_each_docker_broker_is_its_own_compose_project() -> None:
    compose = Compose(("docker-compose",), (1, 29, 2))
    kraft = compose.args(KRAFT, "up", "-d")
    assert kraft[:3] == ["docker-compose", "-p", "log-pipeline-kafka"]
    assert Path(kraft[4]).parts[-2:] == ("staging", "compose.yml") and kraft[5:] == ["up", "-d"]
    zookeeper = compose.args(ZOOKEEPER, "down")
    assert zookeeper[:3] == ["docker-compose", "-p", "kafka-docker"]
    assert Path(zookeeper[4]).parts[-2:] == ("kafka-docker", "docker-compose.yml")


def test_the_kraft_service_is_published_and_advertised_on_the_port_docker_mode_sets() -> None:
    kafka = yaml.safe_load(KRAFT.file.read_text())["services"]["kafka"]
    assert kafka["image"].startswith("log-pipeline/kafka:")
    port = dict(KRAFT.env)["KAFKA_EXTERNAL_PORT"]
    assert port == "9092"  # where every service looks for the broker by default
    assert "${KAFKA_EXTERNAL_PORT:-19092}:19092" in kafka["ports"][0]
    assert (
        "EXTERNAL://${KAFKA_EXTERNAL_HOST:-localhost}:${KAFKA_EXTERNAL_PORT:-19092}"
        in (kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    )
