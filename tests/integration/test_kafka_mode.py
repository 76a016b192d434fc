"""Which broker ``make up`` runs, and that a Docker that cannot run Kafka never strands a user.

A fake ``docker`` and ``docker-compose`` (shell scripts first on PATH) stand for a machine with an engine
that answers, the project's broker image built, and Debian's docker-compose 1.29, as in the issue: ``up``
fails, or (the 1.29 ``--wait`` case) exits 0 without starting anything. The broker the fallback starts is
the real local KRaft broker, on free ports.
"""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from local_kafka.broker import BrokerError
from local_kafka.docker import KRAFT, compose_up, find_compose

from tests.conftest import free_port

pytestmark = pytest.mark.integration

KAFKA_CLI = Path(__file__).resolve().parents[2] / "kafka-docker" / "main.py"

FAKE_DOCKER = """#!/bin/sh
echo "docker $*" >> "$FAKE_LOG"
case "$1" in
  info) [ "$FAKE_ENGINE" = up ] && echo "Server Version: 20.10.24" && exit 0
        echo "errors pretty printing info" >&2
        echo "ERROR: Cannot connect to the Docker daemon at unix:///fake.sock. Is the docker daemon running?" >&2
        exit 1 ;;
  compose) [ -n "$FAKE_PLUGIN" ] && [ "$2" = version ] && echo "$FAKE_PLUGIN" && exit 0
           echo "docker: unknown command: docker compose" >&2; exit 1 ;;
  inspect) echo false ;;
  image) [ "$FAKE_IMAGE" = built ] && exit 0; echo "Error: No such image: $3" >&2; exit 1 ;;
esac
"""
# Debian's docker-compose 1.29: `up --wait` prints its usage and exits 0; `up` fails (here: its port is taken).
FAKE_COMPOSE = """#!/bin/sh
echo "docker-compose $*" >> "$FAKE_LOG"
case "$*" in
  "version --short") echo 1.29.2 ;;
  *"up -d --wait"*) echo "Usage: up [options] [--scale SERVICE=NUM...] [--] [SERVICE...]"; exit 0 ;;
  *"up -d"*) [ "$FAKE_PULL" = ok ] && exit 0
             echo "Creating log-pipeline-kafka_kafka_1 ..." >&2
             echo "ERROR: for kafka  Cannot start service kafka: port is already allocated" >&2; exit 1 ;;
  *"ps -q kafka"*) ;;
  *down*) echo "Removing network kafka-docker_default" >&2 ;;
esac
"""


@pytest.fixture
def fake_docker(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("docker", FAKE_DOCKER), ("docker-compose", FAKE_COMPOSE)):
        path = bin_dir / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    port = free_port()
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_ENGINE": "up",
        "FAKE_IMAGE": "built",
        "KAFKA_MODE": "auto",
        "KAFKA_LOCAL_DIR": str(tmp_path / "kafka"),
        "KAFKA_LOCAL_PORT": str(port),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}",
    }


def kafka(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(KAFKA_CLI), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def calls(env: dict[str, str]) -> list[str]:
    return Path(env["FAKE_LOG"]).read_text().splitlines()


def test_compose_1_29_is_used_without_wait_and_its_exit_code_is_not_trusted(
    fake_docker: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in fake_docker.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FAKE_PULL", "ok")  # `up -d` exits 0, yet no kafka container runs
    compose = find_compose()
    assert compose is not None and compose.command == ("docker-compose",) and compose.version == (1, 29, 2)
    assert not compose.waits
    started = time.monotonic()
    with pytest.raises(BrokerError, match="no kafka container runs"):
        compose_up(compose, KRAFT, broker_answers=lambda: False)
    assert time.monotonic() - started < 10
    ups = [c for c in calls(fake_docker) if " up " in f" {c} "]
    assert ups and all("--wait" not in c for c in ups)


def test_the_compose_plugin_v2_waits(fake_docker: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in fake_docker.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FAKE_PLUGIN", "2.24.6")
    compose = find_compose()
    assert compose is not None and compose.command == ("docker", "compose") and compose.waits


def test_auto_mode_falls_back_to_the_local_broker_with_a_note_and_remembers_it(fake_docker: dict[str, str]) -> None:
    up = kafka(fake_docker, "up")
    try:
        assert up.returncode == 0, up.stderr
        notes = [line for line in up.stdout.splitlines() if line.startswith("Kafka: using the local KRaft broker")]
        assert len(notes) == 1
        assert "docker-compose 1.29.2 up failed: ERROR: for kafka  Cannot start service kafka" in notes[0]
        assert "Kafka (local KRaft, pid" in up.stdout and "Topics ready" in up.stdout
        # The project's KRaft image, as the `kafka` service of the stack's compose file, in a project of its own.
        ups = [c for c in calls(fake_docker) if " up -d" in c]
        assert ups and all(c.startswith("docker-compose -p log-pipeline-kafka -f ") for c in ups)
        assert all("staging/compose.yml up -d kafka" in c for c in ups)
        assert any(" down" in c for c in calls(fake_docker))
        assert (Path(fake_docker["KAFKA_LOCAL_DIR"]) / "mode").read_text().strip() == "local"

        # The remembered mode, not a new guess, for the commands that follow: no Docker call from here on.
        Path(fake_docker["FAKE_LOG"]).unlink()
        status = kafka(fake_docker, "status")
        assert status.returncode == 0 and "(local KRaft, pid" in status.stdout
        consume = kafka(fake_docker, "consume", "--idle-s", "1", "logs.dlq", "--from-beginning")
        assert consume.returncode == 0, consume.stderr
        assert consume.stderr.strip().splitlines() == [
            "consume: 0 messages from logs.dlq; no new message for 1s (IDLE_S=60 waits longer, IDLE_S=0 until Ctrl-C)"
        ]
        assert not Path(fake_docker["FAKE_LOG"]).exists()
    finally:
        down = kafka(fake_docker, "down")
    assert down.returncode == 0 and down.stdout.strip() == "Kafka (local KRaft) stopped"
    assert not (Path(fake_docker["KAFKA_LOCAL_DIR"]) / "mode").exists()
    status = kafka(fake_docker, "status")
    assert (status.returncode, status.stdout.strip()) == (2, "kafka: not running")


def test_docker_mode_without_an_engine_fails_at_once_saying_what_to_do(fake_docker: dict[str, str]) -> None:
    started = time.monotonic()
    result = kafka({**fake_docker, "KAFKA_MODE": "docker", "FAKE_ENGINE": "down"}, "up", timeout=30)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: KAFKA_MODE=docker, but no Docker engine answers: Cannot connect to the Docker daemon at "
        "unix:///fake.sock. Is the docker daemon running? — start the Docker engine (or install Compose), "
        "or run with KAFKA_MODE=local (a real Kafka from its Maven jars, needs Java 17+)"
    ]


def test_docker_mode_without_the_image_fails_at_once_naming_make_images(fake_docker: dict[str, str]) -> None:
    result = kafka({**fake_docker, "KAFKA_MODE": "docker", "FAKE_IMAGE": "missing"}, "up", timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: KAFKA_MODE=docker, but the log-pipeline/kafka:latest image is not built — run `make images` first, "
        "or run with KAFKA_MODE=local (a real Kafka from its Maven jars, needs Java 17+)"
    ]
    assert not [c for c in calls(fake_docker) if " up " in f" {c} "]  # nothing is pulled or started
