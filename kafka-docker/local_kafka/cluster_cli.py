"""``cluster-up``, ``cluster-down`` and ``cluster-status``: the local three-broker cluster for ``make``."""

import argparse
import time

from eventbus import KafkaSettings, ensure_topics
from local_kafka.cluster import LocalCluster

COMMANDS = ("cluster-up", "cluster-down", "cluster-status")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sub.add_parser("cluster-up", help="start a three-broker local KRaft cluster and create the topics (RF 3)")
    sub.add_parser("cluster-down", help="stop the local cluster")
    sub.add_parser("cluster-status", help="say which of the cluster's nodes run, and which one is the controller")


def run(command: str) -> int:
    cluster = LocalCluster()
    if command == "cluster-up":
        up(cluster)
    elif command == "cluster-down":
        stopped = cluster.stop()
        print(f"Kafka cluster: stopped nodes {stopped}" if stopped else "Kafka cluster was not running")
    else:
        return status(cluster)
    return 0


def up(cluster: LocalCluster) -> None:
    started = time.monotonic()
    fresh = cluster.start()
    nodes = len(cluster.nodes)
    print(f"Kafka cluster (local KRaft, {nodes} nodes) at {cluster.bootstrap}; files in {cluster.config.home}")
    if fresh:
        print(f"started nodes {fresh}")
    env = cluster.client_env()
    settings = KafkaSettings(**{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
    created = ensure_topics(settings)
    print(
        f"Topics ready (replication {min(3, len(cluster.nodes))})"
        + (f", created {', '.join(created)}" if created else "")
    )
    env_file = cluster.config.home / "client.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)  # it holds the client's password when the cluster is secure
    print(f"Point the services at it: set -a; . {env_file}; set +a")
    print(f"cluster-up took {time.monotonic() - started:.1f}s")


def status(cluster: LocalCluster) -> int:
    running = cluster.running()
    for node_id, broker in cluster.nodes.items():
        state = f"up (pid {running[node_id]})" if node_id in running else "DOWN"
        print(f"node {node_id}: {state} at {broker.config.bootstrap}")
    if running:
        print(f"controller quorum leader: node {cluster.active_controller()}")
    return 0 if len(running) == len(cluster.nodes) else 1
