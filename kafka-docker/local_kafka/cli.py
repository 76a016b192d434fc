"""``python kafka-docker/main.py up|down|status|topics|consume``: the broker for ``make``.

``cluster-up`` / ``cluster-down`` / ``cluster-status`` run a three-broker local cluster instead
(``local_kafka.cluster``; ``KAFKA_CLUSTER_SECURE=1`` for TLS + SASL/SCRAM).

``KAFKA_MODE`` picks the broker: ``docker`` (one KRaft node from the project's image, ``make images``, under
Compose), ``docker-zookeeper`` (the original ZooKeeper + Kafka compose, Confluent's images from their
registry), ``local`` (KRaft from the Maven jars) or ``auto`` (default: docker when an engine answers, a
usable Compose is installed, the image is built and the broker really comes up in its container; else
local, with one line saying why and how to get Docker mode). The mode ``up`` chose is remembered (``mode``
in the local broker's folder) for ``consume``, ``status`` and ``down``, until ``down``."""

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eventbus import KafkaSettings, ensure_topics, wait_for_broker
from eventbus.errors import BrokerUnavailableError
from local_kafka import cluster_cli
from local_kafka.broker import BrokerError, LocalBroker, LocalBrokerConfig, ensure_jars, port_in_use
from local_kafka.docker import (
    DOCKER_BROKERS,
    KAFKA_IMAGE,
    KRAFT,
    Compose,
    DockerBroker,
    compose_down,
    compose_up,
    docker_problem,
    find_compose,
    image_built,
)

MODES = ("auto", "docker", "docker-zookeeper", "local")
STARTED_MODES = ("docker", "docker-zookeeper", "local")
DEFAULT_IDLE_S = 10.0


def requested_mode() -> str:
    mode = os.environ.get("KAFKA_MODE", "auto") or "auto"
    if mode not in MODES:
        raise BrokerError(f"KAFKA_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def mode_file() -> Path:
    return LocalBrokerConfig().home / "mode"


def remembered_mode() -> str | None:
    try:
        mode = mode_file().read_text().strip()
    except OSError:
        return None
    return mode if mode in STARTED_MODES else None


def remember(mode: str | None) -> None:
    if mode is None:
        mode_file().unlink(missing_ok=True)
        return
    mode_file().parent.mkdir(parents=True, exist_ok=True)
    mode_file().write_text(mode + "\n")


def current_mode() -> str:
    """The mode of the broker ``up`` started: KAFKA_MODE when set, else the remembered one, else local."""
    mode = requested_mode()
    if mode != "auto":
        return mode
    return remembered_mode() or "local"


def usable_compose() -> Compose:
    compose = find_compose()
    if compose is None:
        raise BrokerError("no Docker Compose is installed (need `docker compose`, or docker-compose 1.27+)")
    return compose


def broker_answers(settings: KafkaSettings) -> bool:
    try:
        wait_for_broker(settings, timeout_s=2)
    except BrokerUnavailableError:
        return False
    return True


def broker_ports(mode: str | None = None) -> list[tuple[int, str]]:
    """The host ports the broker of ``mode`` (default: the one ``up`` would start) listens on."""
    mode = mode or current_mode()
    if mode in DOCKER_BROKERS:
        return [(9092, f"Kafka ({DOCKER_BROKERS[mode].description})")]
    config = LocalBrokerConfig()
    return [
        (config.port, "Kafka (KAFKA_LOCAL_PORT)"),
        (config.controller_port, "Kafka's controller (KAFKA_LOCAL_CONTROLLER_PORT)"),
    ]


def running_mode() -> str | None:
    """The mode of the broker ``up`` started if it still runs (None when none runs)."""
    mode = remembered_mode() if requested_mode() == "auto" else requested_mode()
    if mode == "local" or mode is None:
        return "local" if LocalBroker().is_running() else None
    return mode if broker_answers(KafkaSettings()) else None


@dataclass(frozen=True)
class Choice:
    """The broker ``up`` starts, and in auto mode, why it is not the Docker one (printed as one line)."""

    mode: str
    fallback: str | None = None


NO_IMAGE = f"the {KAFKA_IMAGE} image is not built"
LOCAL_HINT = "or run with KAFKA_MODE=local (a real Kafka from its Maven jars, needs Java 17+)"


def choose(requested: str, problem: Callable[[], str | None], built: Callable[[], bool]) -> Choice:
    """Which broker to start for ``requested``; the checks are called only when the choice needs them.

    ``problem`` says why Docker cannot run here (None when it can), ``built`` whether the broker image exists.
    An explicit Docker mode that cannot run is an error saying what to do; auto mode falls back to local.
    """
    if requested == "local":
        return Choice("local")
    why = problem()
    if requested == "docker-zookeeper":
        if why is not None:
            raise BrokerError(f"KAFKA_MODE=docker-zookeeper, but {why} — start the Docker engine, {LOCAL_HINT}")
        return Choice(requested)
    if why is None and not built():
        why = NO_IMAGE
    if requested == "docker":
        if why is not None:
            todo = "run `make images` first" if why == NO_IMAGE else "start the Docker engine (or install Compose)"
            raise BrokerError(f"KAFKA_MODE=docker, but {why} — {todo}, {LOCAL_HINT}")
        return Choice(requested)
    return Choice("docker") if why is None else Choice("local", why)


def fallback_note(why: str) -> str:
    """The one line auto mode prints when it runs the local broker: why, and how to get Docker mode."""
    if why == NO_IMAGE:
        how = "`make images`, then `make kafka-down kafka-up`"
    elif why.startswith("Docker could not start it"):
        how = "fix that, then `make kafka-down kafka-up`; KAFKA_MODE=local stops trying"
    else:
        how = "start the Docker engine, `make images`, then `make kafka-down kafka-up`"
    return f"Kafka: using the local KRaft broker ({why}; for Docker mode: {how})"


def _docker_up(settings: KafkaSettings, broker: DockerBroker) -> None:
    compose = usable_compose()
    pulled = "" if broker is KRAFT else " (images are pulled on first use)"
    print(f"Kafka: starting {broker.description} with {compose.name}{pulled} ...", flush=True)
    try:
        compose_up(compose, broker, lambda: broker_answers(settings))
    except BrokerError:
        compose_down(compose, broker)  # leave no half-created network or container behind
        raise
    remember(broker.mode)
    print(f"Kafka ({broker.description}) is up at {settings.kafka_bootstrap_servers}")


def _local_up() -> None:
    broker = LocalBroker()
    fresh = broker.start()
    remember("local")
    state = "started" if fresh else "already running"
    print(
        f"Kafka (local KRaft, pid {broker.pid()}) {state} at {broker.config.bootstrap}; files in {broker.config.home}"
    )


def up() -> None:
    started = time.monotonic()
    settings = KafkaSettings()
    mode = requested_mode()
    if mode == "auto":
        mode = running_mode() or mode  # keep the broker that runs
    choice = choose(mode, docker_problem, image_built)
    fallback = choice.fallback
    if choice.mode in DOCKER_BROKERS:
        try:
            _docker_up(settings, DOCKER_BROKERS[choice.mode])
        except BrokerError as exc:
            if mode != "auto":
                raise
            fallback = f"Docker could not start it: {exc}"
    if fallback is not None:
        print(fallback_note(fallback), flush=True)
    if choice.mode == "local" or fallback is not None:
        _local_up()
    created = ensure_topics(settings)
    topics = ", ".join(
        [settings.logs_topic, settings.predictions_topic, settings.dlq_topic, settings.repartition_topic]
    )
    print(f"Topics ready: {topics}" + (f" (created {', '.join(created)})" if created else ""))
    print(f"kafka-up took {time.monotonic() - started:.1f}s")


def down() -> None:
    mode = current_mode()
    if mode in DOCKER_BROKERS:
        compose = usable_compose()
        broker = DOCKER_BROKERS[mode]
        if not compose_down(compose, broker):
            raise BrokerError(f"{compose.name} down failed; see `{' '.join(compose.command)} -p {broker.project} ps`")
        print(f"Kafka ({broker.description}) stopped")
    else:
        stopped = LocalBroker().stop()
        print("Kafka (local KRaft) stopped" if stopped else "Kafka (local KRaft) was not running")
    remember(None)


def status() -> int:
    """One line on the broker; 0 when it answers, 1 when it is down, 2 when none was started."""
    settings = KafkaSettings()
    mode = current_mode()
    if broker_answers(settings):
        where = f"local KRaft, pid {LocalBroker().pid()}" if mode == "local" else DOCKER_BROKERS[mode].description
        print(f"kafka: up at {settings.kafka_bootstrap_servers} ({where})")
        return 0
    if remembered_mode() is None:  # `up` did not start one, or `down` stopped it
        print("kafka: not running")
        return 2
    print(f"kafka: DOWN ({settings.kafka_bootstrap_servers}, {mode} mode)")
    return 1


def check_ports() -> list[str]:
    """One line per broker port another program holds (none when the broker ``up`` started still runs)."""
    if running_mode() is not None:
        return []
    host = LocalBrokerConfig().host
    return [
        f"port {port} on {host} ({what}) is already in use by another program"
        for port, what in broker_ports()
        if port_in_use(host, port)
    ]


TIMEOUT_ERROR = "Error processing message, terminating consumer process"


def consume(topic: str, args: list[str], idle_s: float) -> int:
    """Kafka's console consumer on ``topic``; it stops after ``idle_s`` without a message (0: never)."""
    settings = KafkaSettings()
    if idle_s > 0 and "--timeout-ms" not in args:
        args = [*args, "--timeout-ms", str(int(idle_s * 1000))]
    mode = current_mode()
    env = None
    if mode in DOCKER_BROKERS:
        broker = DOCKER_BROKERS[mode]
        command = usable_compose().args(broker, "exec", "-T", "kafka", *broker.console_consumer)
        command += ["--bootstrap-server", "localhost:9092", "--topic", topic, *args]
        env = {**os.environ, **dict(broker.env)}
    else:
        command = LocalBroker().console_consumer_command(topic, args, settings.kafka_bootstrap_servers)
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    count, idle, held = 0, False, ""
    try:
        # The console consumer ends an idle wait with an ERROR and a TimeoutException trace: that is the
        # expected end here, so it is replaced by the summary line; any other stderr output passes through.
        for line in process.stderr:
            if held:
                idle = "TimeoutException" in line
                if not idle:
                    sys.stderr.write(held + line)
                held = ""
            elif TIMEOUT_ERROR in line:
                held = line
            elif line.startswith("Processed a total of"):
                count = int(line.split()[4])
            elif not (idle and (line.startswith(("\t", " ")) or "TimeoutException" in line)):
                sys.stderr.write(line)
        code = process.wait()
    except KeyboardInterrupt:
        code = process.wait()
    if idle:
        ended = f"no new message for {idle_s:g}s (IDLE_S=60 waits longer, IDLE_S=0 until Ctrl-C)"
    else:
        ended = "--max-messages reached" if "--max-messages" in args and code == 0 else f"exit code {code}"
    print(f"consume: {count} message{'s' if count != 1 else ''} from {topic}; {ended}", file=sys.stderr)
    return 0 if idle else code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafka", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the broker (if needed) and create the topics")
    sub.add_parser("down", help="stop the broker")
    sub.add_parser("status", help="say whether the broker answers")
    sub.add_parser("topics", help="create the topics if missing")
    sub.add_parser("fetch-jars", help="resolve the broker's jars with Maven (first run only)")
    cluster_cli.add_commands(sub)
    consume_parser = sub.add_parser("consume", help="Kafka's console consumer on a topic")
    consume_parser.add_argument(
        "--idle-s", type=float, default=DEFAULT_IDLE_S, help="stop after this many seconds without a message (0: never)"
    )
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
            # The tests' brokers and the fallback of auto mode both run from the jars.
            if requested_mode() not in DOCKER_BROKERS:
                ensure_jars()
        elif options.command == "topics":
            ensure_topics(KafkaSettings())
        elif options.command == "consume":
            return consume(options.topic, options.args, options.idle_s)
        elif options.command in cluster_cli.COMMANDS:
            return cluster_cli.run(options.command)
    except (BrokerError, BrokerUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
