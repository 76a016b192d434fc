"""A real one-node Apache Kafka (KRaft) run from its Maven jars, for machines with no Docker engine."""

from local_kafka.broker import BrokerError, LocalBroker, LocalBrokerConfig

__all__ = ["BrokerError", "LocalBroker", "LocalBrokerConfig"]
