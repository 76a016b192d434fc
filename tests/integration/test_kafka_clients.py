"""The processor's Kafka client ports behave the same on both clients (``KAFKA_CLIENT``), on the real broker:
what the loop relies on (assignment callbacks, batches, commits of the next offset, seek, pause, the restorer)."""

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from eventbus import ConsumerPort, KafkaSettings, ensure_topics, make_stream_consumer, make_stream_producer

pytestmark = pytest.mark.integration

RECORDS_PER_PARTITION = 20


class Listener(ConsumerRebalanceListener):  # kafka-python insists on the base class
    def __init__(self) -> None:
        self.assigned: list[TopicPartition] = []
        self.revoked: list[TopicPartition] = []

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.assigned.extend(assigned)

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.revoked.extend(revoked)


def poll_until(consumer: ConsumerPort, count: int, timeout_s: float = 30) -> dict[TopicPartition, list[int]]:
    offsets: dict[TopicPartition, list[int]] = {}
    deadline = time.monotonic() + timeout_s
    while sum(map(len, offsets.values())) < count and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200, max_records=500).items():
            offsets.setdefault(TopicPartition(tp.topic, tp.partition), []).extend(r.offset for r in records)
    return offsets


@pytest.fixture(params=["confluent", "kafka-python"])
def client_settings(request: pytest.FixtureRequest, kafka_settings: KafkaSettings) -> Iterator[KafkaSettings]:
    settings = kafka_settings.model_copy(update={"kafka_client": request.param})
    ensure_topics(settings)
    yield settings


def test_both_clients_deliver_commit_seek_pause_and_restore_alike(client_settings: KafkaSettings) -> None:
    topic = client_settings.logs_topic
    partitions = [TopicPartition(topic, p) for p in range(client_settings.logs_partitions)]
    producer = make_stream_producer(client_settings)
    sent = [
        producer.send(topic, value=f"{p}:{i}".encode(), key=b"k", partition=p)
        for p in range(len(partitions))
        for i in range(RECORDS_PER_PARTITION)
    ]
    producer.flush(30)
    assert all(future.succeeded() for future in sent)
    assert producer.partitions_for(topic) == set(range(len(partitions)))

    listener = Listener()
    group = f"ports-{uuid.uuid4().hex[:8]}"
    consumer = make_stream_consumer(client_settings, group_id=group, max_poll_records=500)
    restorer = make_stream_consumer(client_settings, group_id=None)
    try:
        consumer.subscribe([topic], listener=listener)
        got = poll_until(consumer, len(sent))
        assert sorted(listener.assigned) == partitions and set(consumer.assignment()) == set(partitions)
        assert {tp: sorted(offsets) for tp, offsets in got.items()} == {
            tp: list(range(RECORDS_PER_PARTITION)) for tp in partitions
        }  # each record once, in order

        # An asynchronous commit of the next offset to read settles inside later polls.
        commit = consumer.commit_async({tp: OffsetAndMetadata(10, "", -1) for tp in partitions})
        deadline = time.monotonic() + 10
        while not commit.is_done and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
        assert commit.is_done and not commit.failed(), commit.exception
        assert [consumer.committed(tp, timeout_ms=5000) for tp in partitions] == [10] * len(partitions)
        consumer.commit({partitions[0]: OffsetAndMetadata(RECORDS_PER_PARTITION, "", -1)}, timeout_ms=5000)
        assert consumer.committed(partitions[0], timeout_ms=5000) == RECORDS_PER_PARTITION
        assert consumer.highwater(partitions[0]) == RECORDS_PER_PARTITION

        # Seek hands records back; paused partitions deliver nothing until resumed.
        consumer.seek(partitions[1], 15)
        assert poll_until(consumer, 5) == {partitions[1]: [15, 16, 17, 18, 19]}
        consumer.pause(*partitions)
        assert set(consumer.paused()) == set(partitions)
        producer.send(topic, value=b"late", key=b"k", partition=2)
        producer.flush(30)
        assert poll_until(consumer, 1, timeout_s=2) == {}
        consumer.resume(*consumer.paused())
        assert not consumer.paused()
        assert poll_until(consumer, 1) == {partitions[2]: [RECORDS_PER_PARTITION]}

        # The restorer: assigned outside the group, read from the beginning to the end offsets.
        restorer.assign(partitions)
        restorer.seek_to_beginning(*partitions)
        end = restorer.end_offsets(partitions, timeout_ms=10_000)
        assert [restorer.position(tp, timeout_ms=10_000) for tp in partitions] == [0] * len(partitions)
        read = poll_until(restorer, len(sent) + 1)
        assert sum(map(len, read.values())) == len(sent) + 1
        assert [restorer.position(tp, timeout_ms=10_000) for tp in partitions] == [end[tp] for tp in partitions]
    finally:
        restorer.close(autocommit=False)
        consumer.close(autocommit=False)
        producer.close(timeout=5)
    assert sorted(listener.revoked) == partitions  # leaving the group revokes them (confluent: inside close)
