"""The pipeline through a broker that demands TLS and SASL/SCRAM, with credentials from the environment.

A local KRaft node started with SASL_SSL listeners only (a throwaway CA, a keystore and SCRAM users made
at start, see ``local_kafka.security``). The simulator, the processor and the ML service run as real
processes with ``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_CAFILE`` set; a client with a
wrong password or without TLS is refused with one line saying so; no password shows in any log or /metrics.
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_kafka.cluster import ClusterConfig, LocalCluster

from devstack.harness import (
    REPO_ROOT,
    SIMULATOR_SUMMARY,
    Collector,
    MLServiceProcess,
    ProcessorProcess,
    read_event_ids,
    train_model,
)
from devstack.processes import free_port, http_status
from eventbus import KafkaSettings, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

EVENTS = 300


@pytest.fixture(scope="module")
def secure_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    node = LocalCluster(ClusterConfig(size=1, host="127.0.0.1", home=tmp_path_factory.mktemp("secure"), secure=True))
    node.start()
    try:
        yield node
    finally:
        node.stop()


def service_env(node: LocalCluster, settings: KafkaSettings, **changes: str) -> dict[str, str]:
    env = {**os.environ, **settings.environment(), **node.client_env(), **changes}
    for name in ("ML_API_KEY", "ML_SCORING_API_KEY"):
        env.pop(name, None)
    return env


def secrets_of(node: LocalCluster) -> list[str]:
    passwords: dict[str, str] = json.loads(node.security.credentials_file.read_text())
    return list(passwords.values())


def run_simulator(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "log-simulator/main.py", *args, "--connect-timeout", "20"]
    return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_pipeline_runs_through_tls_and_scram_and_strangers_are_refused(
    secure_node: LocalCluster, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = KafkaSettings(
        **{k.lower(): v for k, v in secure_node.client_env().items()},  # type: ignore[arg-type]
        logs_topic=f"logs-{suffix}",
        predictions_topic=f"predictions-{suffix}",
        dlq_topic=f"logs.dlq-{suffix}",
    )
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_password is not None
    ensure_topics(settings)

    # Strangers first: each ends on one line saying why, and gives up instead of retrying for ever. (On a loaded
    # machine a first attempt may be cut short before the broker's answer is read: one "not reachable" line.)
    wrong_password = run_simulator(service_env(secure_node, settings, KAFKA_SASL_PASSWORD="guess"), "--count", "5")
    no_tls = run_simulator(service_env(secure_node, settings, KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT"), "--count", "5")
    for refused, words in (
        (wrong_password, "refused the SCRAM-SHA-512 login of user 'pipeline'"),
        (no_tls, "speaks TLS, but KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT"),
    ):
        output = refused.stdout + refused.stderr
        lines = output.strip().splitlines()
        assert refused.returncode == 3 and words in lines[-1] and output.count(words) == 1, lines
        assert "Traceback" not in output and len(lines) <= 3, lines
    processor_env = service_env(secure_node, settings, KAFKA_SASL_PASSWORD="guess", PROCESSOR_WORKERS="1")
    stranger = ProcessorProcess(
        processor_env, tmp_path, group="stranger", scorer_url="http://127.0.0.1:9", name="stranger-processor"
    )
    stranger.start()
    assert stranger.process is not None and stranger.process.wait(60) == 3, stranger.log_tail()
    assert stranger.log_text().count("refused the SCRAM-SHA-512 login") == 1, stranger.log_tail()

    # The pipeline, configured only through the environment.
    ml = MLServiceProcess(train_model(tmp_path), tmp_path)
    metrics_port = free_port()
    processor = ProcessorProcess(
        service_env(secure_node, settings),
        tmp_path,
        group=f"secure-{suffix}",
        scorer_url=ml.url,
        name="processor",
        PROCESSOR_METRICS_PORT=str(metrics_port),
        PROCESSOR_METRICS_HOST="127.0.0.1",
        PROCESSOR_WORKERS="1",
    )
    collector = Collector(settings)
    try:
        ml.start()
        processor.start()
        collector.start()
        sent = run_simulator(service_env(secure_node, settings), "--count", str(EVENTS), "--rate", "300", "--quiet")
        summary = SIMULATOR_SUMMARY.search(sent.stdout + sent.stderr)
        assert sent.returncode == 0 and summary, sent.stdout + sent.stderr
        assert summary.groups() == (str(EVENTS), str(EVENTS), "0")
        logged = read_event_ids(settings)
        missing = collector.wait_for(set(logged), timeout_s=90)
        assert len(logged) == EVENTS and not missing, processor.log_tail()

        metrics = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert http_status(f"http://127.0.0.1:{metrics_port}/health") == 200
        assert processor.terminate() == 0, processor.log_tail()
    finally:
        collector.stop()
        processor.cleanup()
        ml.cleanup()

    texts = {"processor /metrics": metrics, "simulator output": sent.stdout + sent.stderr}
    for child in (ml, processor, stranger):
        texts[child.name] = child.log_text()
    for log in secure_node.config.home.rglob("*.log*"):
        texts[str(log.relative_to(secure_node.config.home))] = log.read_text(errors="replace")
    for log in secure_node.config.home.rglob("kafka.out"):
        texts[str(log.relative_to(secure_node.config.home))] = log.read_text(errors="replace")
    assert any("server.log" in name for name in texts), "the broker's own log was not read"
    for secret in secrets_of(secure_node):
        leaked = [name for name, text in texts.items() if secret in text]
        assert not leaked, f"a password appears in {leaked}"


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
