"""The local KRaft broker: real round trips through kafka-python and Kafka's console consumer."""

import subprocess

import pytest
from local_kafka import BrokerError, LocalBroker, LocalBrokerConfig

from eventbus import KafkaSettings
from tests.conftest import free_port, read_all


def test_round_trip_through_kafka_python(kafka_settings: KafkaSettings, producer_factory, consumer_factory) -> None:
    producer = producer_factory()
    for i in range(1000):
        producer.send(kafka_settings.logs_topic, key=f"svc-{i % 3}".encode(), value=f"message-{i}".encode())
    producer.flush()
    consumer = consumer_factory(kafka_settings.logs_topic)
    records = read_all(consumer, 1000)
    assert sorted(r.value.decode() for r in records) == sorted(f"message-{i}" for i in range(1000))
    # Keyed by service: each key's messages stay in one partition, in order.
    by_key: dict[bytes, list[int]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(record.partition)
    assert all(len(set(partitions)) == 1 for partitions in by_key.values())


def test_console_consumer_reads_what_was_produced(kafka_settings: KafkaSettings, producer_factory) -> None:
    producer = producer_factory()
    for i in range(20):
        producer.send(kafka_settings.predictions_topic, value=f'{{"n": {i}}}'.encode())
    producer.flush()
    command = LocalBroker().console_consumer_command(
        kafka_settings.predictions_topic,
        ["--from-beginning", "--max-messages", "20", "--timeout-ms", "20000"],
        bootstrap=kafka_settings.kafka_bootstrap_servers,
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(lines) == sorted(f'{{"n": {i}}}' for i in range(20))


def test_broker_restart_keeps_messages_and_start_is_idempotent(tmp_path) -> None:
    from eventbus import ensure_topics, make_consumer, make_producer

    config = LocalBrokerConfig(host="127.0.0.1", port=free_port(), controller_port=free_port(), home=tmp_path)
    broker = LocalBroker(config)
    settings = KafkaSettings(kafka_bootstrap_servers=config.bootstrap)
    try:
        assert broker.start() is True
        assert broker.start() is False  # already running: no second process, no wipe
        ensure_topics(settings)
        producer = make_producer(settings)
        for i in range(50):
            producer.send(settings.logs_topic, value=f"kept-{i}".encode())
        producer.flush()
        producer.close()
        assert broker.stop() is True
        assert broker.stop() is False
        broker.start()
        consumer = make_consumer(settings, settings.logs_topic, group_id="restart-check")
        records = read_all(consumer, 50)
        consumer.close()
        assert sorted(r.value.decode() for r in records) == sorted(f"kept-{i}" for i in range(50))
    finally:
        broker.stop()


def test_port_in_use_is_one_clear_error(tmp_path, kafka_bootstrap: str) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    broker = LocalBroker(LocalBrokerConfig(host=host, port=int(port), controller_port=free_port(), home=tmp_path))
    with pytest.raises(BrokerError, match=f"port {port} .* already in use"):
        broker.start()
    assert not broker.is_running()
