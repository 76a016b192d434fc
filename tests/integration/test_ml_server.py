"""The real ML service process: started like an operator would, driven with the README's curl commands."""

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from ml_service.model import load_bundle

from devstack.processes import Child, free_port
from tests.ml_context import save_small_bundle

pytestmark = pytest.mark.integration

SERVICE_DIR = Path(__file__).resolve().parents[2] / "fastapi-ml-service"
ADMIN_KEY = "integration-admin-key"
LAUNCHES = {
    "python-main": lambda port: [sys.executable, "main.py"],
    "uvicorn": lambda port: [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
}
# After a graceful shutdown the uvicorn CLI re-raises SIGTERM (dies "by signal"); python main.py exits 0.
EXIT_ON_SIGTERM = {"python-main": 0, "uvicorn": -signal.SIGTERM}


class RunningServer(NamedTuple):
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    launch: str  # a key of LAUNCHES


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_small_bundle(tmp_path_factory.mktemp("served-model"), seed=8)


@pytest.fixture(params=sorted(LAUNCHES))
def server(request: pytest.FixtureRequest, model_path: Path, tmp_path: Path) -> Iterator[RunningServer]:
    port = free_port()
    env = {
        **os.environ,
        "ML_HOST": "127.0.0.1",
        "ML_PORT": str(port),
        "MODEL_PATH": str(model_path),
        "ML_API_KEY": ADMIN_KEY,
        "LOG_LEVEL": "INFO",
    }
    env.pop("ML_SCORING_API_KEY", None)
    child = Child(
        "ml-service", LAUNCHES[request.param](port), env=env, cwd=SERVICE_DIR, log_path=tmp_path / "server.log"
    )
    child.start()
    try:
        child.wait_ready(f"http://127.0.0.1:{port}/ready")
        assert child.process is not None
        yield RunningServer(port, child.process, child.log_path, request.param)
    finally:
        child.stop(timeout_s=20)


def curl(command: str) -> tuple[int, str]:
    """Run a curl command line as a user would type it; return (HTTP status, body)."""
    argv = [*shlex.split(command), "-w", "\n%{http_code}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def test_readme_curl_examples_then_clean_sigterm(server: RunningServer, model_path: Path) -> None:
    port, process, log, launch = server
    version = load_bundle(model_path).version

    status, body = curl(
        f"curl -s -X POST localhost:{port}/predict -H 'Content-Type: application/json' "
        """-d '{"latency_ms": 250, "error_rate": 0.4}'"""
    )
    assert status == 200
    assert json.loads(body) == {"anomaly": True, "score": json.loads(body)["score"], "model_version": version}

    status, body = curl(
        f"curl -s -X POST localhost:{port}/predict -H 'Content-Type: application/json' "
        """-d '{"latency_ms": 205, "error_rate": 0.004}'"""
    )
    assert status == 200 and json.loads(body)["anomaly"] is False

    status, body = curl(
        f"curl -s -X POST localhost:{port}/predict/batch -H 'Content-Type: application/json' "
        """-d '[{"latency_ms": 205, "error_rate": 0.004}, {"latency_ms": 1500, "error_rate": 0.003}]'"""
    )
    assert status == 200 and [v["anomaly"] for v in json.loads(body)] == [False, True]

    status, body = curl(
        f"curl -s -X POST localhost:{port}/predict -H 'Content-Type: application/json' "
        """-d '{"latency_ms": "250", "error_rate": NaN}'"""
    )
    assert status == 422 and "body.latency_ms" in body and "body.error_rate" in body

    status, body = curl(f"curl -s -X POST localhost:{port}/predict -d 'latency_ms=250'")
    assert status == 415

    status, body = curl(f"curl -s localhost:{port}/model")
    assert status == 200 and json.loads(body)["version"] == version

    status, body = curl(f"curl -s -X POST localhost:{port}/model/reload -H 'X-API-Key: {ADMIN_KEY}'")
    assert status == 200 and json.loads(body)["model_version"] == version

    status, body = curl(f"curl -s localhost:{port}/metrics")
    assert status == 200 and 'ml_http_requests_total{method="POST",route="/predict",status="200"} 2.0' in body

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == EXIT_ON_SIGTERM[launch]
    output = log.read_text()
    assert "Application shutdown complete" in output
    assert ADMIN_KEY not in output
