"""``python kafka-docker/main.py up|down|status|topics|consume``: the broker for ``make``.

``KAFKA_MODE`` picks the broker: ``docker`` (docker compose), ``local`` (KRaft from the Maven jars)
or ``auto`` (default: docker when ``docker info`` succeeds, else local).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

from eventbus import KafkaSettings, ensure_topics
from eventbus._clients import wait_for_broker
from eventbus.errors import BrokerUnavailableError
from local_kafka.broker import KAFKA_DOCKER_DIR, BrokerError, LocalBroker, ensure_jars

COMPOSE_FILE = KAFKA_DOCKER_DIR / "docker-compose.yml"


def broker_mode() -> str:
    mode = os.environ.get("KAFKA_MODE", "auto")
    if mode not in ("auto", "docker", "local"):
        raise BrokerError(f"KAFKA_MODE must be auto, docker or local, not {mode!r}")
    if mode != "auto":
        return mode
    if shutil.which("docker") is None:
        return "local"
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    return "docker" if probe.returncode == 0 else "local"


def compose_command() -> list[str]:
    """``docker compose`` (the plugin), else the standalone ``docker-compose``."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise BrokerError("Docker Compose is not installed (neither `docker compose` nor `docker-compose`)")


def _compose(*args: str) -> list[str]:
    return [*compose_command(), "-f", str(COMPOSE_FILE), *args]


def up() -> None:
    started = time.monotonic()
    mode = broker_mode()
    settings = KafkaSettings()
    if mode == "docker":
        subprocess.run(_compose("up", "-d", "--wait"), check=True)
        wait_for_broker(settings, timeout_s=90)
        print(f"Kafka (docker compose) is up at {settings.kafka_bootstrap_servers}")
    else:
        broker = LocalBroker()
        fresh = broker.start()
        state = "started" if fresh else "already running"
        print(
            f"Kafka (local KRaft, pid {broker.pid()}) {state} at {broker.config.bootstrap}; "
            f"files in {broker.config.home}"
        )
    created = ensure_topics(settings)
    topics = ", ".join(
        [settings.logs_topic, settings.predictions_topic, settings.dlq_topic, settings.repartition_topic]
    )
    print(f"Topics ready: {topics}" + (f" (created {', '.join(created)})" if created else ""))
    print(f"kafka-up took {time.monotonic() - started:.1f}s")


def down() -> None:
    if broker_mode() == "docker":
        subprocess.run(_compose("down"), check=True)
        print("Kafka (docker compose) stopped")
        return
    stopped = LocalBroker().stop()
    print("Kafka (local KRaft) stopped" if stopped else "Kafka (local KRaft) was not running")


def status() -> int:
    settings = KafkaSettings()
    try:
        wait_for_broker(settings, timeout_s=3)
    except BrokerUnavailableError:
        print(f"kafka: DOWN ({settings.kafka_bootstrap_servers})")
        return 1
    print(f"kafka: up at {settings.kafka_bootstrap_servers}")
    return 0


def consume(topic: str, args: list[str]) -> int:
    settings = KafkaSettings()
    if broker_mode() == "docker":
        command = _compose(
            "exec",
            "-T",
            "kafka",
            "kafka-console-consumer",
            "--bootstrap-server",
            "localhost:9092",
            "--topic",
            topic,
            *args,
        )
    else:
        command = LocalBroker().console_consumer_command(topic, args, settings.kafka_bootstrap_servers)
    return subprocess.call(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafka", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the broker (if needed) and create the topics")
    sub.add_parser("down", help="stop the broker")
    sub.add_parser("status", help="say whether the broker answers")
    sub.add_parser("topics", help="create the topics if missing")
    sub.add_parser("fetch-jars", help="resolve the broker's jars with Maven (first run only)")
    consume_parser = sub.add_parser("consume", help="Kafka's console consumer on a topic")
    consume_parser.add_argument("topic")
    consume_parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the console consumer")
    options = parser.parse_args(argv)
    try:
        if options.command == "up":
            up()
        elif options.command == "down":
            down()
        elif options.command == "status":
            return status()
        elif options.command == "fetch-jars":
            if broker_mode() == "local":
                ensure_jars()
        elif options.command == "topics":
            ensure_topics(KafkaSettings())
        elif options.command == "consume":
            return consume(options.topic, options.args)
    except (BrokerError, BrokerUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"error: {' '.join(exc.cmd)} exited with {exc.returncode}", file=sys.stderr)
        return 1
    return 0
