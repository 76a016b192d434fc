"""The processor's Kafka client choice (KAFKA_CLIENT) and what the librdkafka client is configured with."""

import pytest
from anomaly_processor import ProcessorSettings, consumer_overrides, producer_overrides
from kafka.coordinator.assignors.range import RangePartitionAssignor

from eventbus import KafkaSettings, stream_client
from eventbus._confluent import ConfluentKafkaError, librdkafka_options


def test_auto_picks_librdkafka_when_installed_and_the_setting_overrides_it() -> None:
    assert stream_client(KafkaSettings(kafka_client="auto")) == "confluent"  # a project dependency
    assert stream_client(KafkaSettings(kafka_client="kafka-python")) == "kafka-python"


def test_security_settings_reach_librdkafka_under_its_names() -> None:
    settings = KafkaSettings(
        kafka_bootstrap_servers="a:9093, b:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="processor",
        kafka_sasl_password="s3cret",
        kafka_ssl_cafile="ca.pem",
        kafka_ssl_certfile="client.pem",
        kafka_ssl_keyfile="client.key",
    )
    assert settings.librdkafka_configs() == {
        "bootstrap.servers": "a:9093,b:9093",
        "security.protocol": "SASL_SSL",
        "socket.nagle.disable": True,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "processor",
        "sasl.password": "s3cret",
        "ssl.ca.location": "ca.pem",
        "ssl.certificate.location": "client.pem",
        "ssl.key.location": "client.key",
    }


def test_the_processor_options_keep_range_assignment_and_its_timeouts_on_librdkafka() -> None:
    consumer = librdkafka_options(consumer_overrides(ProcessorSettings()))
    assert consumer["partition.assignment.strategy"] == "range"
    assert consumer["session.timeout.ms"] == 10_000
    assert consumer["max.poll.interval.ms"] == 600_000
    assert "max_poll_records" not in consumer and "max.poll.records" not in consumer  # a consume() argument
    producer = librdkafka_options(producer_overrides())
    assert producer["message.max.bytes"] == 4 * 1024 * 1024
    assert librdkafka_options({"partition_assignment_strategy": (RangePartitionAssignor,)}) == {
        "partition.assignment.strategy": "range"
    }


def test_an_option_librdkafka_has_no_counterpart_for_is_refused() -> None:
    with pytest.raises(ValueError, match="api_version"):
        librdkafka_options({"api_version": (3, 0)})


def test_librdkafka_errors_keep_whether_waiting_can_fix_them() -> None:
    from confluent_kafka import KafkaError

    assert ConfluentKafkaError(KafkaError(KafkaError._TRANSPORT)).retriable
    assert ConfluentKafkaError(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)).retriable
    assert not ConfluentKafkaError(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)).retriable
    assert not ConfluentKafkaError(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)).retriable


def test_a_broker_handle_destroyed_under_a_request_is_retried_not_fatal() -> None:
    """A killed partition leader: librdkafka fails the offset look-up of a state restore with _DESTROY_BROKER."""
    from confluent_kafka import KafkaError

    assert ConfluentKafkaError(KafkaError(KafkaError._DESTROY_BROKER)).retriable
    assert not ConfluentKafkaError(KafkaError(KafkaError._INVALID_ARG)).retriable
