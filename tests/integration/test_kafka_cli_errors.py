"""`make kafka-up` failures are one clear line and a non-zero exit, never a hang or a traceback."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

KAFKA_CLI = Path(__file__).resolve().parents[2] / "kafka-docker" / "main.py"


def run_up(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "KAFKA_MODE": "local", "KAFKA_LOCAL_DIR": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, str(KAFKA_CLI), "up"], env=environment, capture_output=True, text=True, timeout=60
    )


def test_missing_java_is_one_clear_error(tmp_path: Path) -> None:
    result = run_up(
        tmp_path,
        JAVA_HOME=str(tmp_path / "no-jdk-here"),
        KAFKA_LOCAL_PORT=str(free_port()),
        KAFKA_LOCAL_CONTROLLER_PORT=str(free_port()),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: Java is not installed (need Java 17+): install a JDK or set JAVA_HOME"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_port_taken_is_one_clear_error(tmp_path: Path, kafka_bootstrap: str) -> None:
    taken = kafka_bootstrap.rsplit(":", 1)[1]
    result = run_up(tmp_path, KAFKA_LOCAL_PORT=taken, KAFKA_LOCAL_CONTROLLER_PORT=str(free_port()))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: port {taken} ") and "already in use" in lines[0]
