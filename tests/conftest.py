"""Fixtures shared by every test (``free_port`` and ``fresh_topics`` come from ``devstack``).

Broker fixtures: one real Kafka broker (local KRaft) for the whole session, started only when a test asks
for it. Each test gets its own topics and consumer group through ``kafka_settings``, so tests never see
each other's messages. Set ``TEST_KAFKA_BOOTSTRAP`` to use an already running broker instead.
"""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from local_kafka import LocalBroker, LocalBrokerConfig

from devstack.harness import fresh_topics
from devstack.processes import free_port, free_ports
from eventbus import KafkaSettings, make_consumer, make_producer


def run_in_fresh_python(code: str, *args: str) -> str:
    """Run ``code`` in a new interpreter on this one's import path (with ``args`` as sys.argv[1:]); its stdout.

    For what a process does the first time: in the test process another test may have done it already.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


# The container tests build images and run compose (minutes, a Docker engine): only `make test-containers`.
collect_ignore = [] if os.environ.get("CONTAINER_TESTS") else ["containers"]

# The processors tests start read one process's output and pids: one process, unless a test asks for more (the
# default, auto, forks one per partition). A stack of its own (`make up`) runs with the user's default.
os.environ.setdefault("PROCESSOR_WORKERS", "1")
# Every test starts fresh consumer groups: none should wait Kafka's 3 s for more members (a stack of its own does).
os.environ.setdefault("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
USER_DEFAULTS = ("PROCESSOR_WORKERS", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS")

# The processor's Kafka clients (KAFKA_CLIENT): each test marked both_clients runs once on each of them.
KAFKA_CLIENTS = ("confluent", "kafka-python")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka-clients",
        default=",".join(KAFKA_CLIENTS),
        help="comma-separated KAFKA_CLIENT values the tests marked both_clients run on (default: both)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_clients"):
        clients = metafunc.config.getoption("kafka_clients").split(",")
        unknown = set(clients) - set(KAFKA_CLIENTS)
        if unknown:
            raise pytest.UsageError(f"--kafka-clients: unknown {sorted(unknown)}; known {list(KAFKA_CLIENTS)}")
        metafunc.parametrize("kafka_client", clients, indirect=True)


@pytest.fixture(autouse=True)
def kafka_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """A both_clients test's client: in KAFKA_CLIENT before its settings and processes are made (autouse: first)."""
    client: str | None = getattr(request, "param", None)
    if client is not None:
        monkeypatch.setenv("KAFKA_CLIENT", client)
    return client


def stack_environment(home: Path) -> dict[str, str]:
    """The environment of a ``make up`` of its own: a local broker, services and run files under ``home``, on
    distinct free ports."""
    kafka_port, controller_port, ml_port, metrics_port, alertmanager_port, prometheus_port = free_ports(6)
    environment = {name: value for name, value in os.environ.items() if name not in USER_DEFAULTS}
    return {
        **environment,
        "KAFKA_MODE": "local",
        "KAFKA_LOCAL_DIR": str(home / "kafka"),
        "KAFKA_LOCAL_PORT": str(kafka_port),
        "KAFKA_LOCAL_CONTROLLER_PORT": str(controller_port),
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{kafka_port}",
        "ML_PORT": str(ml_port),
        "PROCESSOR_METRICS_PORT": str(metrics_port),
        "ALERTMANAGER_PORT": str(alertmanager_port),  # make monitoring-up: not the machine's 9193 and 9090
        "PROMETHEUS_PORT": str(prometheus_port),
        "STACK_RUN_DIR": str(home / "run"),
        "MODEL_PATH": str(home / "model.joblib"),
    }


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    home: Path = tmp_path_factory.mktemp("kafka")
    broker = LocalBroker(LocalBrokerConfig(host="127.0.0.1", port=free_port(), controller_port=free_port(), home=home))
    broker.start()
    try:
        yield broker.config.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, kafka_client: str | None) -> KafkaSettings:
    """Fresh topics for this test alone (on the test's Kafka client, when it runs on both)."""
    return fresh_topics(kafka_bootstrap)


@pytest.fixture
def kafka_env(kafka_settings: KafkaSettings) -> dict[str, str]:
    """Environment variables that point a service's process at this test's broker and topics."""
    return {**os.environ, **kafka_settings.environment()}


@pytest.fixture
def producer_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., KafkaProducer]]:
    made: list[KafkaProducer] = []

    def factory(**overrides: object) -> KafkaProducer:
        producer = make_producer(kafka_settings, **overrides)
        made.append(producer)
        return producer

    yield factory
    for producer in made:
        producer.close(timeout=5)


@pytest.fixture
def consumer_factory(kafka_settings: KafkaSettings) -> Iterator[Callable[..., KafkaConsumer]]:
    """Consumers in a random group (unless one is given), reading from the earliest offset."""
    made: list[KafkaConsumer] = []

    def factory(*topics: str, group_id: str | None = None, **overrides: object) -> KafkaConsumer:
        consumer = make_consumer(
            kafka_settings, *topics, group_id=group_id or f"test-{uuid.uuid4().hex[:8]}", **overrides
        )
        made.append(consumer)
        return consumer

    yield factory
    for consumer in made:
        consumer.close()


def read_all(consumer: KafkaConsumer, expected: int, timeout_s: float = 30.0) -> list:
    """Poll until ``expected`` records arrived or ``timeout_s`` passed; return what arrived."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records
