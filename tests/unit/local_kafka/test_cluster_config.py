"""What a cluster's nodes are told: the same voters and cluster id, three copies, two needed for a write."""

from pathlib import Path

import pytest
from local_kafka.broker import LocalBroker
from local_kafka.cluster import ClusterConfig, LocalCluster

from eventbus._clients import topic_replication


def properties(broker: LocalBroker) -> dict[str, str]:
    broker.config.home.mkdir(parents=True, exist_ok=True)
    broker._write_properties()
    lines = broker.config.properties_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_three_nodes_share_one_quorum_and_replicate_internal_topics_three_times(tmp_path: Path) -> None:
    cluster = LocalCluster(ClusterConfig(size=3, home=tmp_path, secure=False))
    props = [properties(node) for node in cluster.nodes.values()]
    voters = {p["controller.quorum.voters"] for p in props}
    assert len(voters) == 1 and len(voters.pop().split(",")) == 3
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert len({p["listeners"] for p in props}) == 3  # every node on its own ports
    assert len({node.config.cluster_id for node in cluster.nodes.values()}) == 1
    for p in props:
        assert (p["offsets.topic.replication.factor"], p["min.insync.replicas"]) == ("3", "2")
        assert p["transaction.state.log.min.isr"] == "2"
    assert cluster.bootstrap.count(",") == 2


def test_a_cluster_comes_back_on_the_same_ports_with_the_same_id(tmp_path: Path) -> None:
    first = LocalCluster(ClusterConfig(size=3, home=tmp_path, secure=False))
    first._save_state()
    again = LocalCluster(ClusterConfig(size=3, home=tmp_path, secure=False))
    assert again.bootstrap == first.bootstrap
    assert again.nodes[2].config.cluster_id == first.nodes[2].config.cluster_id


def test_a_lone_broker_is_its_own_quorum_with_one_copy(tmp_path: Path) -> None:
    from local_kafka import LocalBrokerConfig

    props = properties(LocalBroker(LocalBrokerConfig(home=tmp_path, port=19092, controller_port=19093)))
    assert "controller.quorum.voters" not in props
    assert props["controller.quorum.bootstrap.servers"].endswith(":19093")
    assert (props["offsets.topic.replication.factor"], props["min.insync.replicas"]) == ("1", "1")
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"


def test_topics_are_replicated_as_the_cluster_allows() -> None:
    assert [topic_replication(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]


def test_a_new_group_waits_for_its_members_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from local_kafka import LocalBrokerConfig

    def delay() -> str:
        config = LocalBrokerConfig(home=tmp_path, port=19092, controller_port=19093)
        return properties(LocalBroker(config))["group.initial.rebalance.delay.ms"]

    monkeypatch.delenv("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", raising=False)
    assert delay() == "3000"  # Kafka's default: the processor's workers get one first assignment
    monkeypatch.setenv("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    assert delay() == "0"
