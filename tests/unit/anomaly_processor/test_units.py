"""The loop's units on their own: one retry step, partition ownership, offset commits, delivery, batch consuming."""

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from anomaly_processor.batches import BatchConsumer
from anomaly_processor.changelog import LocalStateStore
from anomaly_processor.commits import OffsetCommitter
from anomaly_processor.delivery import Delivery, Outgoing
from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ownership import OwnershipListener, PartitionOwnership
from anomaly_processor.records import DecodedBatch
from anomaly_processor.retry import Backoff, RetryContext, retry_after
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from tests.unit.anomaly_processor.test_loop import P0, P1, FakeConsumer, FakeProducer, consumer_record


class Lines:
    """What a printer was asked to show."""

    def __init__(self) -> None:
        self.retries: list[str] = []
        self.notices: list[str] = []
        self.ticks = 0

    def retry(self, message: str) -> None:
        self.retries.append(message)

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def tick(self) -> None:
        self.ticks += 1


def no_jitter() -> Backoff:
    return Backoff(0.5, 4.0, jitter=0.0, rng=random.Random(0))


# -- retry_after ---------------------------------------------------------------------------------------------


def test_a_retry_step_logs_shows_and_waits_the_same_growing_delay(caplog: pytest.LogCaptureFixture) -> None:
    backoff, lines, waited = no_jitter(), Lines(), []
    logger = logging.getLogger("test.retry")
    with caplog.at_level(logging.WARNING, logger="test.retry"):
        for _ in range(2):
            retry_after(
                backoff,
                waited.append,
                lines,
                logger,
                "call failed (%s); retrying in %.1fs",
                "boom",
                shown="in {delay}s",
            )
    assert waited == [0.5, 1.0]
    assert lines.retries == ["in 0.5s", "in 1.0s"]
    assert [r.getMessage() for r in caplog.records] == [
        "call failed (boom); retrying in 0.5s",
        "call failed (boom); retrying in 1.0s",
    ]


# -- PartitionOwnership --------------------------------------------------------------------------------------


def test_a_revocation_moves_the_epoch_and_forgets_the_partition_under_the_lock() -> None:
    consumer = FakeConsumer([])
    ownership: PartitionOwnership
    forgotten: list[tuple[TopicPartition, bool]] = []
    ownership = PartitionOwnership(consumer, on_revoke=lambda tp: forgotten.append((tp, ownership.lock.locked())))
    record = consumer_record(P0, 5, b"{}")
    epoch = ownership.current_epoch()
    OwnershipListener(ownership).on_partitions_revoked([P0])
    assert ownership.current_epoch() == epoch + 1
    assert forgotten == [(P0, True)]
    assert ownership.revoked_since(epoch) == {("logs", 0)} and ownership.revoked_since(epoch + 1) == set()
    assert ownership.still_owned([record], epoch) == [] and ownership.still_owned([record], epoch + 1) == [record]


def test_partitions_assigned_while_holding_are_paused_at_once() -> None:
    consumer = FakeConsumer([])
    ownership = PartitionOwnership(consumer, on_revoke=lambda tp: None)
    ownership.assign([P0])
    assert consumer.paused() == set()
    ownership.holding = True
    ownership.assign([P1])
    assert consumer.paused() == {P1}


# -- OffsetCommitter -----------------------------------------------------------------------------------------


def make_committer(consumer: FakeConsumer) -> tuple[OffsetCommitter, PartitionOwnership]:
    committer: OffsetCommitter
    ownership = PartitionOwnership(consumer, on_revoke=lambda tp: committer.forget(tp))
    retries = RetryContext(Lines(), threading.Event(), lambda seconds: None, no_jitter, "kafka:9092")
    committer = OffsetCommitter(consumer, ownership, ProcessorMetrics(), retries)
    return committer, ownership


def test_offsets_are_committed_after_the_last_record_and_one_commit_is_in_flight() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    consumer.hold_commits = True
    committer, ownership = make_committer(consumer)
    committer.queue([consumer_record(P0, 3, b"{}"), consumer_record(P0, 7, b"{}")], ownership.current_epoch())
    assert effects == [("commit", {0: 8}, "async")]
    committer.send()  # the first is still out: nothing is sent over it
    assert effects == [("commit", {0: 8}, "async")]
    committer.queue([consumer_record(P1, 2, b"{}")], ownership.current_epoch())
    # Still out as the next batch is done: both are committed synchronously rather than pile up.
    assert effects[-1] == ("commit", {0: 8, 1: 3}, "sync")


def test_a_partition_revoked_before_its_batch_is_done_is_not_committed() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    consumer.hold_commits = True
    committer, ownership = make_committer(consumer)
    epoch = ownership.current_epoch()
    committer.queue([consumer_record(P0, 1, b"{}")], epoch)
    ownership.revoke([P0])  # its held offset is dropped with the revocation
    committer.queue([consumer_record(P0, 4, b"{}"), consumer_record(P1, 9, b"{}")], epoch)
    assert effects[-1] == ("commit", {1: 10}, "sync")


def test_offsets_held_for_the_state_are_committed_only_when_released_and_not_after_a_revocation() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    committer, ownership = make_committer(consumer)
    epoch = ownership.current_epoch()
    committer.queue([consumer_record(P0, 3, b"{}"), consumer_record(P1, 5, b"{}")], epoch, release=False)
    committer.queue([consumer_record(P0, 4, b"{}")], epoch, release=False)
    assert effects == []  # the state these offsets led to is not saved yet
    ownership.revoke([P1])  # its next owner restores the state saved with its last commit, and redoes the rest
    committer.release()
    assert effects == [("commit", {0: 5}, "async")]


# -- LocalStateStore ----------------------------------------------------------------------------------------


def test_the_local_store_keeps_the_last_state_and_drops_a_partitions_services(tmp_path) -> None:
    store = LocalStateStore(lambda service: int(service[-1]) % 2, str(tmp_path))
    store.put_many([("a0", b"old"), ("a0", b"new"), ("b1", b"x"), ("c2", b"y"), ("d3", None)])
    assert (store.get("a0"), store.get("b1"), len(store)) == (b"new", b"x", 3)
    store.put_many([("c2", None)])  # a tombstone
    store.drop_partitions([1])
    assert (store.get("a0"), store.get("b1"), store.get("c2"), len(store)) == (b"new", None, None, 1)
    store.close()
    assert list(tmp_path.iterdir()) == []


# -- Delivery ------------------------------------------------------------------------------------------------


def make_delivery(producer: FakeProducer, stop: threading.Event, holds: list[float]) -> tuple[Delivery, Lines]:
    lines = Lines()
    delivery = Delivery(producer, RetryContext(lines, stop, holds.append, no_jitter, "kafka:9092"))
    return delivery, lines


def test_records_kafka_did_not_acknowledge_are_resent_after_a_wait() -> None:
    producer, holds = FakeProducer([]), []
    producer.fail_next = [NotLeaderForPartitionError()]
    delivery, lines = make_delivery(producer, threading.Event(), holds)
    assert delivery.deliver([Outgoing("predictions", b"auth", b"1"), Outgoing("predictions", b"auth", b"2")])
    assert [sent["value"] for sent in producer.sent] == [b"1", b"2", b"1"]
    assert holds == [0.5]
    assert lines.retries == [
        "Kafka unavailable at kafka:9092, resending 1 records in 0.5s "
        "(NotLeaderForPartitionError: [Error 6] NotLeaderForPartitionError)"
    ]
    assert lines.notices == ["Kafka at kafka:9092 is back."]


def test_keyed_records_go_to_their_key_partition_every_time() -> None:
    producer = FakeProducer([])
    delivery, _ = make_delivery(producer, threading.Event(), [])
    delivery.deliver([Outgoing("predictions", b"auth", b"1"), Outgoing("predictions", None, b"2")])
    delivery.deliver([Outgoing("predictions", b"auth", b"3")])
    partitions = [sent["partition"] for sent in producer.sent]
    assert partitions[0] == partitions[2] is not None and partitions[1] is None


def test_delivery_gives_up_only_when_stopped_while_kafka_is_silent() -> None:
    class Silent(FakeProducer):
        def flush(self, timeout: float | None = None) -> None:
            raise KafkaTimeoutError()

    stop = threading.Event()
    stop.set()
    delivery, _ = make_delivery(Silent([]), stop, [])
    assert delivery.deliver([Outgoing("predictions", b"auth", b"1")]) is False


# -- BatchConsumer -------------------------------------------------------------------------------------------


def make_batches(
    consumer: FakeConsumer, weight: Callable[[Any], int] | None = None, batch_wait_ms: int = 0
) -> tuple[BatchConsumer, PartitionOwnership]:
    ownership = PartitionOwnership(consumer, on_revoke=lambda tp: None)
    batches = BatchConsumer(
        consumer,
        ownership,
        batch_max=100,
        batch_wait_ms=batch_wait_ms,
        printer=Lines(),  # type: ignore[arg-type]
        metrics=ProcessorMetrics(),
        stop=threading.Event(),
        weight=weight,
    )
    return batches, ownership


def test_records_of_many_events_fill_a_batch_and_the_next_one_then_are_polled_again() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    batches, _ = make_batches(consumer, weight=lambda record: len(record.value), batch_wait_ms=50)  # events held
    consumer.queued[P0] = [consumer_record(P0, offset, b"x" * 60, key=b"k") for offset in range(4)]

    polls: list[int] = []

    def more_arrives() -> None:  # after the first poll: a batch that kept records back must not poll past them
        if polls:
            consumer.queued.setdefault(P1, [consumer_record(P1, 0, b"x", key=b"k")])
        polls.append(1)

    consumer.on_poll = more_arrives

    first, _ = batches.poll_batch()
    second, _ = batches.poll_batch()

    # BATCH_MAX 100: one record of 60 events a batch; the one after is kept, the rest sought back to.
    assert [r.offset for r in first] == [0] and [(r.partition, r.offset) for r in second] == [(0, 1), (1, 0)]
    assert ("seek", 0, 2) in effects


def test_a_rewind_drops_what_was_kept_for_the_next_batch() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    batches, _ = make_batches(consumer, weight=lambda record: len(record.value))
    consumer.queued[P0] = [consumer_record(P0, offset, b"x" * 60, key=b"k") for offset in range(2)]
    first, _ = batches.poll_batch()

    batches.rewind(first)  # e.g. given up on stop: the partition is polled again from there

    assert effects[-1] == ("seek", 0, 0)
    assert batches.poll_batch()[0] == []  # not handed out twice


def test_records_handed_back_are_sought_to_their_first_offset_in_partitions_still_ours() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    consumer.assigned = {P1}
    batches, _ = make_batches(consumer)
    batches.rewind([consumer_record(P1, 9, b"{}"), consumer_record(P1, 4, b"{}"), consumer_record(P0, 2, b"{}")])
    assert effects == [("seek", 1, 4)]


def test_records_of_partitions_revoked_while_waiting_are_dropped_from_the_batch() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    batches, ownership = make_batches(consumer)
    epoch = ownership.current_epoch()
    decoded = DecodedBatch()
    decoded.refused.extend([(consumer_record(P0, 1, b"x"), "bad"), (consumer_record(P1, 1, b"x"), "bad")])
    ownership.revoke([P0])
    consumer.assigned = {P1}
    kept = batches.drop_lost(decoded, epoch)
    assert [record.partition for record, _ in kept.refused] == [1]


def test_a_wait_keeps_polling_with_every_partition_paused() -> None:
    effects: list[tuple[Any, ...]] = []
    consumer = FakeConsumer(effects)
    batches, ownership = make_batches(consumer)
    batches.hold(0)
    assert effects == [("poll", [0, 1])] and not ownership.holding
    batches.resume_paused()
    assert consumer.paused() == set()
