"""Several local KRaft brokers (each a combined broker + controller) forming one cluster.

Each node is a ``LocalBroker`` in its own folder under ``KAFKA_CLUSTER_DIR`` (default
``kafka-docker/.cluster``). The ports, chosen free on the first start, and the cluster id are kept in
``cluster.json`` there, so later starts bring back the same cluster. Internal topics are replicated to
every node up to three, with two in-sync replicas needed for a write (see ``min_insync_replicas``).
"""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_kafka.broker import (
    KAFKA_DOCKER_DIR,
    BrokerError,
    LocalBroker,
    LocalBrokerConfig,
    _pid_alive,
    free_port,
    new_cluster_id,
)
from local_kafka.security import ScramTls


@dataclass(frozen=True)
class ClusterConfig:
    """How many nodes, where their files live, their heap, and whether they demand TLS + SCRAM."""

    size: int = field(default_factory=lambda: int(os.environ.get("KAFKA_CLUSTER_SIZE", 3)))
    host: str = field(default_factory=lambda: os.environ.get("KAFKA_LOCAL_HOST", "127.0.0.1"))
    home: Path = field(
        default_factory=lambda: Path(os.environ.get("KAFKA_CLUSTER_DIR", KAFKA_DOCKER_DIR / ".cluster")).resolve()
    )
    # Three JVMs share the machine: a small heap each is plenty for a test cluster.
    heap: str = field(default_factory=lambda: os.environ.get("KAFKA_CLUSTER_HEAP", "320m"))
    secure: bool = field(default_factory=lambda: os.environ.get("KAFKA_CLUSTER_SECURE", "0") not in ("", "0"))

    @property
    def state_file(self) -> Path:
        return self.home / "cluster.json"


class LocalCluster:
    """Start, stop, kill and inspect the nodes of one local cluster."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.security = ScramTls(self.config.home / "security", (self.config.host, "localhost"))
        state = self._load_state()
        voters = tuple(f"{n['id']}@{self.config.host}:{n['controller_port']}" for n in state["nodes"])
        self.nodes: dict[int, LocalBroker] = {
            n["id"]: LocalBroker(
                LocalBrokerConfig(
                    host=self.config.host,
                    port=n["port"],
                    controller_port=n["controller_port"],
                    home=self.config.home / f"node-{n['id']}",
                    heap=self.config.heap,
                    node_id=n["id"],
                    voters=voters,
                    cluster_id=state["cluster_id"],
                    replication=min(3, len(state["nodes"])),
                    security=self.security if state["secure"] else None,
                )
            )
            for n in state["nodes"]
        }

    def _load_state(self) -> dict[str, Any]:
        """The saved ports and cluster id, or new ones (saved on the first start)."""
        try:
            state: dict[str, Any] = json.loads(self.config.state_file.read_text())
            return state
        except FileNotFoundError:
            pass
        return {
            "cluster_id": new_cluster_id(),
            "secure": self.config.secure,
            "nodes": [
                {"id": i, "port": free_port(self.config.host), "controller_port": free_port(self.config.host)}
                for i in range(1, self.config.size + 1)
            ],
        }

    def _save_state(self) -> None:
        first = next(iter(self.nodes.values())).config
        state = {
            "cluster_id": first.cluster_id,
            "secure": first.security is not None,
            "nodes": [
                {"id": i, "port": b.config.port, "controller_port": b.config.controller_port}
                for i, b in self.nodes.items()
            ],
        }
        self.config.home.mkdir(parents=True, exist_ok=True)
        self.config.state_file.write_text(json.dumps(state, indent=2) + "\n")

    @property
    def secure(self) -> bool:
        return next(iter(self.nodes.values())).config.security is not None

    @property
    def bootstrap(self) -> str:
        return ",".join(b.config.bootstrap for b in self.nodes.values())

    def client_env(self) -> dict[str, str]:
        """Environment variables that point a service at this cluster (with credentials when secure)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        if self.secure:
            env.update(self.security.client_env())
        return env

    def client_configs(self) -> dict[str, Any]:
        configs: dict[str, Any] = {"bootstrap_servers": self.bootstrap.split(",")}
        if self.secure:
            configs.update(self.security.client_configs())
        return configs

    def start(self) -> list[int]:
        """Launch every node that is not running, then wait until all answer; the ids started."""
        self._save_state()
        if self.secure:
            self.security.ensure()
        launched = {i: b.launch() for i, b in self.nodes.items()}
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda i: self.nodes[i].wait_ready(launched[i]), self.nodes))
        return [i for i, process in launched.items() if process is not None]

    def start_node(self, node_id: int) -> None:
        self.nodes[node_id].start()

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.nodes[node_id].kill()

    def stop(self, timeout_s: float = 30.0) -> list[int]:
        """SIGTERM every node at once (one at a time, the last ones would wait for a lost quorum); the ids
        that were running. A node still up after ``timeout_s`` is SIGKILLed."""
        running = {i: pid for i, b in self.nodes.items() if (pid := b.pid()) is not None}
        for pid in running.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_pid_alive(pid) for pid in running.values()):
            time.sleep(0.2)
        for i in running:
            self.nodes[i].kill()
        for broker in self.nodes.values():
            broker.config.pid_file.unlink(missing_ok=True)
        return sorted(running)

    def running(self) -> dict[int, int]:
        """Node id to pid, for the nodes that run."""
        return {i: pid for i, b in self.nodes.items() if (pid := b.pid()) is not None}

    def active_controller(self) -> int:
        """The node id of the KRaft quorum's leader, from the newest epoch any live node has recorded."""
        best: tuple[int, int] | None = None
        for i in self.running():
            path = self.nodes[i].config.data_dir / "__cluster_metadata-0" / "quorum-state"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            leader, epoch = int(state.get("leaderId", -1)), int(state.get("leaderEpoch", -1))
            if leader > 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        if best is None:
            raise BrokerError("no node knows the controller quorum's leader")
        return best[0]

    def partition_leader(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``'s ``partition``, as the cluster's metadata says."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(**self.client_configs())
        try:
            for described in admin.describe_topics([topic]):
                for p in described["partitions"]:
                    if p["partition_index"] == partition:
                        return int(p["leader_id"])
        finally:
            admin.close()
        raise BrokerError(f"{topic}[{partition}] has no leader")
