"""A real Apache Kafka (KRaft) run from its Maven jars, for machines with no Docker engine: one node
(``LocalBroker``) or a cluster of them (``LocalCluster``, optionally with TLS + SASL/SCRAM listeners)."""

from local_kafka.broker import BrokerError, LocalBroker, LocalBrokerConfig
from local_kafka.cluster import ClusterConfig, LocalCluster

__all__ = ["BrokerError", "ClusterConfig", "LocalBroker", "LocalBrokerConfig", "LocalCluster"]
