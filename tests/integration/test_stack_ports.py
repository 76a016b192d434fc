"""``make up`` checks every port it needs before it starts anything; ``make status`` with nothing running."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

STACK = Path(__file__).resolve().parents[2] / "scripts" / "stack.py"


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    kafka_port = free_port()
    return {
        **os.environ,
        "KAFKA_MODE": "local",
        "KAFKA_LOCAL_DIR": str(tmp_path / "kafka"),
        "KAFKA_LOCAL_PORT": str(kafka_port),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(free_port()),
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{kafka_port}",
        "ML_PORT": str(free_port()),
        "PROCESSOR_METRICS_PORT": str(free_port()),
        "STACK_RUN_DIR": str(tmp_path / "run"),
        "MODEL_PATH": str(tmp_path / "model.joblib"),
    }


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def hold(listeners: list[socket.socket], port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    listeners.append(sock)


def stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(STACK), *args], env=env, capture_output=True, text=True, timeout=60)


def test_every_taken_port_is_one_line_and_nothing_is_started(
    stack_env: dict[str, str], listeners: list[socket.socket], tmp_path: Path
) -> None:
    for name in ("ML_PORT", "PROCESSOR_METRICS_PORT", "KAFKA_LOCAL_PORT"):
        hold(listeners, int(stack_env[name]))
    result = stack(stack_env, "up", "--follow", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    me = f"held by pid {os.getpid()} "
    assert len(lines) == 4, lines
    assert lines[0].startswith(f"error: port {stack_env['ML_PORT']} on 127.0.0.1 (ML service) is already in use")
    assert lines[1].startswith(f"error: port {stack_env['PROCESSOR_METRICS_PORT']} on 127.0.0.1 (processor metrics)")
    assert lines[2].startswith(f"error: port {stack_env['KAFKA_LOCAL_PORT']} on 127.0.0.1 (Kafka (KAFKA_LOCAL_PORT))")
    assert all(me in line for line in lines[:3])
    assert f"`ML_PORT={int(stack_env['ML_PORT']) + 1} make up`" in lines[0]
    assert lines[3] == "make up started nothing."
    assert not list((tmp_path / "run").glob("*.pid")) and not (tmp_path / "kafka" / "broker.pid").exists()


def test_status_with_nothing_running_is_a_summary_and_exit_0(stack_env: dict[str, str]) -> None:
    result = stack(stack_env, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "kafka: not running",
        "ml-service: not running",
        "processor: not running",
        "simulator: not running",
        "Nothing runs: `make up` starts everything.",
    ]


def test_a_service_that_fails_to_start_is_named_with_its_reason_and_what_up_started_is_stopped(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    from ml_service.model import FORMAT_VERSION

    # A model file that needs no training (the ML service exits on its settings before it reads the file).
    Path(stack_env["MODEL_PATH"]).write_bytes(b"not read")
    Path(stack_env["MODEL_PATH"]).with_suffix(".json").write_text(f'{{"format": {FORMAT_VERSION}}}')
    result = stack({**stack_env, "ML_WORKERS": "many"}, "up", "--follow", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ml-service exited while starting: pydantic_core._pydantic_core.ValidationError")
    assert lines[0].endswith(f"see {tmp_path / 'run' / 'ml-service.log'}")
    assert lines[-1] == "make up stopped what it had started: ml-service, kafka"
    assert "Kafka (local KRaft) stopped" in result.stdout
    assert not (tmp_path / "kafka" / "broker.pid").exists() and not list((tmp_path / "run").glob("*.pid"))
