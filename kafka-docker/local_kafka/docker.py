"""Kafka under Docker Compose, with either Compose a machine may have.

Two brokers can run this way: ``KRAFT`` (``KAFKA_MODE=docker``, and auto mode's first choice), one KRaft node
from the project's own image (``make images``; the ``kafka`` service of ``staging/compose.yml``), and
``ZOOKEEPER`` (``KAFKA_MODE=docker-zookeeper``), the original design's ZooKeeper + Kafka from Confluent's
images (``kafka-docker/docker-compose.yml``; needs their registry). Both listen on localhost:9092.

Compose v2 (``docker compose`` or a 2.x ``docker-compose``) waits for the healthchecks itself (``up --wait``);
Debian's ``docker-compose`` 1.29 does not know ``--wait`` (it prints its usage and exits 0), so with it the
broker is polled here. Either way the result is checked (a running ``kafka`` container and a broker that
answers), never only Compose's exit code.
"""

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local_kafka.broker import KAFKA_DOCKER_DIR, BrokerError

COMPOSE_FILE = KAFKA_DOCKER_DIR / "docker-compose.yml"
STACK_COMPOSE_FILE = KAFKA_DOCKER_DIR.parent / "staging" / "compose.yml"
KAFKA_IMAGE = "log-pipeline/kafka:latest"
# 1.27 is the first docker-compose that reads a file without a `version:` key (the Compose specification).
OLDEST_COMPOSE = (1, 27)


@dataclass(frozen=True)
class DockerBroker:
    """A broker Compose runs: its file, project, extra environment and Kafka's console consumer inside it."""

    mode: str
    description: str
    file: Path
    project: str
    env: tuple[tuple[str, str], ...]
    console_consumer: tuple[str, ...]


KRAFT = DockerBroker(
    mode="docker",
    description="KRaft, image log-pipeline/kafka",
    file=STACK_COMPOSE_FILE,
    project="log-pipeline-kafka",
    env=(("KAFKA_EXTERNAL_PORT", "9092"),),  # its EXTERNAL listener, published and advertised as localhost:9092
    console_consumer=(
        "java",
        "-Xmx256m",
        "-Dlog4j2.configurationFile=/opt/kafka/log4j2-tools.yaml",
        "-cp",
        "/opt/kafka/libs/*",
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
    ),
)
ZOOKEEPER = DockerBroker(
    mode="docker-zookeeper",
    description="ZooKeeper + Kafka, Confluent's images",
    file=COMPOSE_FILE,
    project="kafka-docker",
    env=(),
    console_consumer=("kafka-console-consumer",),
)
DOCKER_BROKERS = {broker.mode: broker for broker in (KRAFT, ZOOKEEPER)}


@dataclass(frozen=True)
class Compose:
    command: tuple[str, ...]
    version: tuple[int, ...]

    @property
    def waits(self) -> bool:
        """Whether ``up --wait`` exists (Compose 2.1.1+)."""
        return self.version >= (2, 1, 1)

    @property
    def name(self) -> str:
        return f"{' '.join(self.command)} {'.'.join(map(str, self.version))}"

    def args(self, broker: DockerBroker, *args: str) -> list[str]:
        return [*self.command, "-p", broker.project, "-f", str(broker.file), *args]


def _version(text: str) -> tuple[int, ...] | None:
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in found.groups() if part is not None) if found else None


def _run(
    command: list[str], timeout_s: float, broker: DockerBroker | None = None
) -> subprocess.CompletedProcess[str] | None:
    env = {**os.environ, **dict(broker.env)} if broker is not None else None
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None


def find_compose() -> Compose | None:
    """The Compose to use: the ``docker compose`` plugin, else a ``docker-compose`` new enough for the file."""
    candidates = [("docker", "compose"), ("docker-compose",)]
    for command in candidates:
        if shutil.which(command[0]) is None:
            continue
        result = _run([*command, "version", "--short"], timeout_s=15)
        version = _version(result.stdout) if result is not None and result.returncode == 0 else None
        if version is not None and version >= OLDEST_COMPOSE:
            return Compose(command, version)
    return None


def docker_problem() -> str | None:
    """Why Docker cannot run the broker here (None when it can): no client, no engine, or no usable Compose."""
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    info = _run(["docker", "info"], timeout_s=15)
    if info is None or info.returncode != 0:
        return f"no Docker engine answers: {_engine_error(info) if info is not None else 'no answer in 15s'}"
    if find_compose() is None:
        return "no Docker Compose is installed (need `docker compose`, or docker-compose 1.27+)"
    return None


def image_built(image: str = KAFKA_IMAGE) -> bool:
    """Whether the engine holds ``image`` (built by ``make images``; nothing is pulled for it)."""
    result = _run(["docker", "image", "inspect", image], timeout_s=15)
    return result is not None and result.returncode == 0


def _engine_error(info: subprocess.CompletedProcess[str]) -> str:
    """The line of a failed ``docker info`` that says why (clients differ in where they print it and what else)."""

    def lines(text: str) -> list[str]:
        return [line.strip().removeprefix("ERROR: ") for line in text.splitlines() if line.strip()]

    why = [
        line
        for line in lines(info.stdout + "\n" + info.stderr)
        if re.search(r"Cannot connect|permission denied|error during connect", line)
    ]
    return (why or lines(info.stderr) or ["no answer"])[0]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def kafka_container_running(compose: Compose, broker: DockerBroker) -> bool:
    result = _run(compose.args(broker, "ps", "-q", "kafka"), timeout_s=30, broker=broker)
    container = result.stdout.strip() if result is not None and result.returncode == 0 else ""
    if not container:
        return False
    state = _run(["docker", "inspect", "-f", "{{.State.Running}}", container.splitlines()[0]], timeout_s=15)
    return state is not None and state.stdout.strip() == "true"


def compose_up(compose: Compose, broker: DockerBroker, broker_answers: Callable[[], bool]) -> None:
    """Start ``broker`` and return once it answers; ``BrokerError`` with the reason otherwise."""
    pull_timeout_s = float(os.environ.get("KAFKA_DOCKER_PULL_TIMEOUT", 600))
    # The KRaft broker is the `kafka` service alone of the full stack's file; ZooKeeper's file is all broker.
    services = ["kafka"] if broker is KRAFT else []
    result = _run(
        compose.args(broker, "up", "-d", *(["--wait"] if compose.waits else []), *services),
        timeout_s=pull_timeout_s,
        broker=broker,
    )
    if result is None:
        raise BrokerError(f"{compose.name} up did not finish within {pull_timeout_s:.0f}s")
    if result.returncode != 0:
        raise BrokerError(f"{compose.name} up failed: {_last_line(result.stderr + result.stdout)}")
    timeout_s = float(os.environ.get("KAFKA_START_TIMEOUT", 90))
    deadline = time.monotonic() + timeout_s
    while True:
        if not kafka_container_running(compose, broker):
            raise BrokerError(f"{compose.name} up returned, but no kafka container runs ({logs_hint(compose, broker)})")
        if broker_answers():
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the kafka container did not answer within {timeout_s:.0f}s ({logs_hint(compose, broker)})"
            )
        time.sleep(1.0)


def logs_hint(compose: Compose, broker: DockerBroker) -> str:
    return f"`{' '.join(compose.command)} -p {broker.project} logs kafka`"


def compose_down(compose: Compose, broker: DockerBroker) -> bool:
    """Remove the containers and network (the KRaft broker's data volume stays); False when Compose failed."""
    result = _run(compose.args(broker, "down"), timeout_s=120, broker=broker)
    return result is not None and result.returncode == 0
