"""Security defaults of the real processes: loopback-only listeners, keys enforced, no secret in any log."""

import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ml_service.model import save_bundle, train_model
from ml_service.training import simulated_training_data

from devstack.processes import Child, free_port, wait_until
from eventbus import KafkaSettings
from tests.integration.test_ml_server import SERVICE_DIR
from tests.ml_context import small_context_model

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRETS = {
    "ML_API_KEY": "admin-key-7f3a9c",
    "ML_SCORING_API_KEY": "scoring-key-51be02",
    "KAFKA_SASL_PASSWORD": "sasl-password-d41d8c",
}


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


def request(url: str, body: bytes | None = None, key: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_ml_service_binds_loopback_enforces_keys_and_never_logs_them(tmp_path: Path) -> None:
    data = simulated_training_data(2000, seed=3)
    forest, metadata = train_model(data.latency_ms, data.error_rate, source=data.source, seed=3)
    model = tmp_path / "model.joblib"
    save_bundle(forest, metadata, *small_context_model(3), model)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ML_HOST"}  # the default bind address is under test
    env |= {"ML_PORT": str(port), "MODEL_PATH": str(model), "LOG_LEVEL": "DEBUG", **SECRETS}
    service = Child("ml-service", [sys.executable, "main.py"], env=env, cwd=SERVICE_DIR, log_path=tmp_path / "ml.log")
    service.start()
    try:
        base = f"http://127.0.0.1:{port}"
        service.wait_ready(f"{base}/ready")
        assert listening_addresses(port) == {"0100007F"}, "the service must listen on 127.0.0.1 only"
        event = b'{"latency_ms": 250, "error_rate": 0.4}'
        assert request(f"{base}/predict", event) == 401
        assert request(f"{base}/predict", event, key="wrong") == 401
        assert request(f"{base}/predict", event, key=SECRETS["ML_SCORING_API_KEY"]) == 200
        assert request(f"{base}/model/reload", b"", key="wrong") == 401
        assert request(f"{base}/model/reload", b"", key=SECRETS["ML_API_KEY"]) == 200
    finally:
        service.terminate()
    text = service.log_text()
    assert text, "the service logged nothing at DEBUG"
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} appeared in the ML service's log"


def test_processor_metrics_bind_loopback_and_its_logs_hold_no_secret(
    tmp_path: Path, kafka_settings: KafkaSettings
) -> None:
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROCESSOR_METRICS_HOST"}
    env |= {
        **kafka_settings.environment(),
        "PROCESSOR_GROUP": f"security-{metrics_port}",
        "PROCESSOR_METRICS_PORT": str(metrics_port),
        "ML_SERVICE_URL": f"http://127.0.0.1:{free_port()}",  # nobody there: the processor waits and retries
        "LOG_LEVEL": "DEBUG",
        **SECRETS,
    }
    processor = Child(
        "processor", [sys.executable, "main.py"], env=env, cwd=REPO / "processor", log_path=tmp_path / "processor.log"
    )
    processor.start()
    try:
        outcome = wait_until(lambda: bool(listening_addresses(metrics_port)), processor.alive, 30)
        assert outcome != "exited", processor.log_tail()
        assert listening_addresses(metrics_port) == {"0100007F"}, "metrics must listen on 127.0.0.1 only"
        time.sleep(2)  # let it log a few retries against the absent ML service
    finally:
        processor.terminate()
    text = processor.log_text()
    assert text, "the processor logged nothing at DEBUG"
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} appeared in the processor's log"
