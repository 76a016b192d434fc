"""Start, stop and inspect a local KRaft broker.

Everything the broker writes (data, server.log, pid, generated config) lives under one folder,
``KAFKA_LOCAL_DIR`` (default ``kafka-docker/.local``). Start and stop are idempotent; a second
start reuses the formatted storage, so earlier messages survive.
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from eventbus._clients import topic_replication

if TYPE_CHECKING:
    from local_kafka.security import ScramTls

KAFKA_DOCKER_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = KAFKA_DOCKER_DIR / "config"
LIBS_DIR = KAFKA_DOCKER_DIR / "libs"
POM = KAFKA_DOCKER_DIR / "pom.xml"
# The JIT's first tier only: on a 2-core machine, the optimising compiler's threads competed with the broker
# for its first minutes. Measured with the benchmark's own broker: 18.5-20.5k against 16.3-18.6k events/s end
# to end, broker CPU 1.6-1.8 s against 2.6-3.5 s, latency p99 at 1,000/s 98-115 against 129-163 ms.
DEFAULT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


def new_cluster_id() -> str:
    """A random Kafka cluster id: a UUID in URL-safe base64, never starting with "-" (Kafka's rule too), which
    the storage tool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BrokerError(Exception):
    """The broker could not be started or stopped; the message says why in one line."""


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class LocalBrokerConfig:
    """Where the local broker listens and keeps its files; defaults come from the environment."""

    host: str = field(default_factory=lambda: os.environ.get("KAFKA_LOCAL_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("KAFKA_LOCAL_PORT", 9092))
    controller_port: int = field(default_factory=lambda: _env_int("KAFKA_LOCAL_CONTROLLER_PORT", 9093))
    home: Path = field(
        default_factory=lambda: Path(os.environ.get("KAFKA_LOCAL_DIR", KAFKA_DOCKER_DIR / ".local")).resolve()
    )
    heap: str = field(default_factory=lambda: os.environ.get("KAFKA_LOCAL_HEAP", "768m"))
    jvm_options: tuple[str, ...] = field(
        default_factory=lambda: tuple(os.environ.get("KAFKA_LOCAL_JVM_OPTS", DEFAULT_JVM_OPTIONS).split())
    )
    start_timeout_s: float = field(default_factory=lambda: float(os.environ.get("KAFKA_START_TIMEOUT", 90)))
    # How long a new consumer group waits for more members before its first assignment. Kafka's own default:
    # the processor's workers start together, and one assignment saves handling start-up events twice.
    group_initial_rebalance_delay_ms: int = field(
        default_factory=lambda: _env_int("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", 3000)
    )
    # A cluster's node: its id, every controller as "id@host:port", the shared cluster id, and the replication
    # of Kafka's internal topics. The defaults are a one-node cluster of its own.
    node_id: int = 1
    voters: tuple[str, ...] = ()
    cluster_id: str | None = None
    replication: int = 1
    security: "ScramTls | None" = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / "kafka.out"


def ensure_jars(quiet: bool = False) -> None:
    """Resolve the broker's jars from Maven Central with ``mvn`` unless they are already here."""
    if any(LIBS_DIR.glob("kafka_2.13-*.jar")) and any(LIBS_DIR.glob("kafka-tools-*.jar")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed: it is needed once to fetch the Kafka jars")
    if not quiet:
        print("Fetching Apache Kafka jars with Maven (first run only)...", flush=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise BrokerError("mvn could not fetch the Kafka jars: " + " | ".join(tail))


def java_command() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError("Java is not installed (need Java 17+): install a JDK or set JAVA_HOME")
    return java


def classpath() -> str:
    return str(LIBS_DIR / "*")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class LocalBroker:
    """One KRaft broker process, controlled through its pid file."""

    def __init__(self, config: LocalBrokerConfig | None = None) -> None:
        self.config = config or LocalBrokerConfig()

    def pid(self) -> int | None:
        try:
            pid = int(self.config.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def client_configs(self) -> dict[str, Any]:
        """kafka-python keyword arguments that reach this broker (with credentials when it demands them)."""
        security = self.config.security
        return {"bootstrap_servers": self.config.bootstrap, **(security.client_configs() if security else {})}

    def _write_properties(self) -> None:
        cfg = self.config
        template = Template((CONFIG_DIR / "server.properties.template").read_text())
        if cfg.voters:
            quorum = "controller.quorum.voters=" + ",".join(cfg.voters)
        else:
            quorum = f"controller.quorum.bootstrap.servers={cfg.host}:{cfg.controller_port}"
        text = template.substitute(
            node_id=cfg.node_id,
            quorum=quorum,
            protocol=cfg.security.protocol if cfg.security else "PLAINTEXT",
            host=cfg.host,
            port=cfg.port,
            controller_port=cfg.controller_port,
            data_dir=cfg.data_dir,
            replication=cfg.replication,
            min_isr=topic_replication(cfg.replication)[1],
            group_initial_rebalance_delay_ms=cfg.group_initial_rebalance_delay_ms,
        )
        if cfg.security:
            text += "".join(f"{line}\n" for line in cfg.security.broker_properties())
        cfg.properties_file.write_text(text)
        cfg.properties_file.chmod(0o600)  # it may hold the inter-broker password

    def _format_storage(self, java: str) -> None:
        if (self.config.data_dir / "meta.properties").exists():
            return
        cluster_id = self.config.cluster_id or new_cluster_id()
        # Static voters (a cluster) need no flag; a node alone is its own quorum.
        quorum_args = [] if self.config.voters else ["--standalone"]
        scram_args = self.config.security.format_args() if self.config.security else []
        result = subprocess.run(
            [
                java,
                "-cp",
                classpath(),
                f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2-tools.yaml'}",
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self.config.properties_file),
                *quorum_args,
                *scram_args,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed: {(result.stdout + result.stderr).strip()[-400:]}")

    def start(self) -> bool:
        """Start the broker and wait until it answers metadata requests; False if it already ran."""
        process = self.launch()
        self.wait_ready(process)
        return process is not None

    def launch(self) -> "subprocess.Popen[bytes] | None":
        """Start the broker's process without waiting for it (None if it already ran): a cluster's nodes
        only answer once a majority of controllers is up, so they are launched together, then waited for."""
        cfg = self.config
        if self.is_running():
            return None
        for port in (cfg.port, cfg.controller_port):
            if port_in_use(cfg.host, port):
                raise BrokerError(
                    f"port {port} on {cfg.host} is already in use by another process: stop it, "
                    f"or set KAFKA_LOCAL_PORT / KAFKA_LOCAL_CONTROLLER_PORT (and KAFKA_BOOTSTRAP_SERVERS)"
                )
        java = java_command()
        ensure_jars()
        for folder in (cfg.home, cfg.data_dir, cfg.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        self._format_storage(java)
        with open(cfg.stdout_log, "ab") as out:
            process = subprocess.Popen(
                [
                    java,
                    f"-Xmx{cfg.heap}",
                    "-XX:+UseG1GC",
                    "-XX:MaxGCPauseMillis=20",
                    "-Djava.awt.headless=true",
                    *cfg.jvm_options,
                    f"-Dkafka.logs.dir={cfg.log_dir}",
                    f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2-broker.yaml'}",
                    "-cp",
                    classpath(),
                    "kafka.Kafka",
                    str(cfg.properties_file),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        cfg.pid_file.write_text(str(process.pid))
        return process

    def wait_ready(self, process: "subprocess.Popen[bytes] | None" = None) -> None:
        """Wait until the broker answers a metadata request (``process``: ours, to notice an early exit)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        cfg = self.config
        deadline = time.monotonic() + cfg.start_timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(
                    f"Kafka exited with code {process.returncode} while starting; see {cfg.server_log} "
                    f"and {cfg.stdout_log}"
                )
            if port_in_use(cfg.host, cfg.port):
                try:
                    admin = KafkaAdminClient(
                        **self.client_configs(), bootstrap_timeout_ms=3000, request_timeout_ms=5000
                    )
                    try:
                        admin.list_topics()
                        return
                    finally:
                        admin.close()
                except (KafkaError, OSError):
                    pass
            time.sleep(0.3)
        raise BrokerError(f"Kafka did not answer within {cfg.start_timeout_s:.0f}s; see {cfg.server_log}")

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``); False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.config.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.1)
        self.config.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL the broker at once, as a crash would (for fault tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        self.config.pid_file.unlink(missing_ok=True)

    def console_consumer_command(self, topic: str, args: list[str], bootstrap: str | None = None) -> list[str]:
        """Kafka's own console consumer, run from the local jars."""
        ensure_jars(quiet=True)
        return [
            java_command(),
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2-tools.yaml'}",
            "-cp",
            classpath(),
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            bootstrap or self.config.bootstrap,
            "--topic",
            topic,
            *args,
        ]
