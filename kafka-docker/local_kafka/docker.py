"""Kafka under Docker Compose (``kafka-docker/docker-compose.yml``), with either Compose a machine may have.

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

from local_kafka.broker import KAFKA_DOCKER_DIR, BrokerError

COMPOSE_FILE = KAFKA_DOCKER_DIR / "docker-compose.yml"
# 1.27 is the first docker-compose that reads a file without a `version:` key (the Compose specification).
OLDEST_COMPOSE = (1, 27)


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

    def args(self, *args: str) -> list[str]:
        return [*self.command, "-f", str(COMPOSE_FILE), *args]


def _version(text: str) -> tuple[int, ...] | None:
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in found.groups() if part is not None) if found else None


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
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


def kafka_container_running(compose: Compose) -> bool:
    result = _run(compose.args("ps", "-q", "kafka"), timeout_s=30)
    container = result.stdout.strip() if result is not None and result.returncode == 0 else ""
    if not container:
        return False
    state = _run(["docker", "inspect", "-f", "{{.State.Running}}", container.splitlines()[0]], timeout_s=15)
    return state is not None and state.stdout.strip() == "true"


def compose_up(compose: Compose, broker_answers: Callable[[], bool]) -> None:
    """Start ZooKeeper + Kafka and return once the broker answers; ``BrokerError`` with the reason otherwise."""
    pull_timeout_s = float(os.environ.get("KAFKA_DOCKER_PULL_TIMEOUT", 600))
    result = _run(compose.args("up", "-d", *(["--wait"] if compose.waits else [])), timeout_s=pull_timeout_s)
    if result is None:
        raise BrokerError(f"{compose.name} up did not finish within {pull_timeout_s:.0f}s")
    if result.returncode != 0:
        raise BrokerError(f"{compose.name} up failed: {_last_line(result.stderr + result.stdout)}")
    timeout_s = float(os.environ.get("KAFKA_START_TIMEOUT", 90))
    deadline = time.monotonic() + timeout_s
    while True:
        if not kafka_container_running(compose):
            raise BrokerError(f"{compose.name} up returned, but no kafka container runs (`{compose.name} logs kafka`)")
        if broker_answers():
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the kafka container did not answer within {timeout_s:.0f}s (`{compose.name} logs kafka`)"
            )
        time.sleep(1.0)


def compose_down(compose: Compose) -> bool:
    """Remove the containers and network; False when Compose failed."""
    result = _run(compose.args("down"), timeout_s=120)
    return result is not None and result.returncode == 0
