"""The processing loop's ordering guarantees, with in-memory stand-ins for the Kafka clients.

The real broker is exercised by ``tests/integration/test_processor_pipeline.py``; here the point is the
order of effects (score, produce, acknowledge, print, commit) when the scorer or Kafka misbehaves.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from anomaly_processor import forwarding
from anomaly_processor.errors import ScoringConfigError, ScoringUnavailableError
from anomaly_processor.ml_client import Score
from anomaly_processor.output import Printer
from anomaly_processor.pipeline import Pipeline
from anomaly_processor.settings import ProcessorSettings
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from kafka.future import Future
from kafka.structs import OffsetAndMetadata

from eventbus import KafkaSettings, LogEvent
from streaming_detector.profiles import generate_normal_events

KAFKA = KafkaSettings(logs_topic="logs", predictions_topic="predictions", dlq_topic="dlq")
SETTINGS = ProcessorSettings(
    batch_max=100, batch_wait_ms=0, retry_backoff_initial_s=0.001, retry_backoff_max_s=0.002, print_mode="quiet"
)
P0, P1 = TopicPartition("logs", 0), TopicPartition("logs", 1)


def consumer_record(
    tp: TopicPartition, offset: int, value: bytes | None, key: bytes | None | str = "service"
) -> ConsumerRecord:
    """A consumed record, keyed by its event's service (as the simulator keys them) unless ``key`` is given."""
    if key == "service":
        try:
            key = orjson.loads(value or b"")["service"].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = b"k"
    assert not isinstance(key, str)
    return ConsumerRecord(tp.topic, tp.partition, 0, offset, 1000 + offset, 0, key, value, [], None, 1, 1, -1)


class FakeConsumer:
    """Hands out queued records once; records every pause, resume, seek and commit in ``effects``."""

    def __init__(self, effects: list[tuple[Any, ...]]) -> None:
        self.effects = effects
        self.queued: dict[TopicPartition, list[ConsumerRecord]] = {}
        self.assigned = {P0, P1}
        self._paused: set[TopicPartition] = set()
        self.listener: Any = None
        self.on_poll: Callable[[], None] | None = None
        self.highwaters: dict[TopicPartition, int] = {}
        self.hold_commits = False
        self.commits_out: list[Future] = []

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        if self.on_poll:
            self.on_poll()
        out = {tp: recs for tp, recs in self.queued.items() if recs and tp not in self._paused}
        for tp in out:
            self.queued[tp] = []
        self.effects.append(("poll", sorted(tp.partition for tp in self._paused)))
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)
        self.effects.append(("resume",))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.effects.append(("seek", tp.partition, offset))

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int | None = None) -> None:
        self.effects.append(("commit", {tp.partition: om.offset for tp, om in offsets.items()}, "sync"))

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> Future:
        """Answered at once, unless ``hold_commits``: then by ``answer_commits``."""
        self.effects.append(("commit", {tp.partition: om.offset for tp, om in offsets.items()}, "async"))
        future = Future()
        self.commits_out.append(future)
        if not self.hold_commits:
            self.answer_commits()
        return future

    def answer_commits(self, error: Exception | None = None) -> None:
        for future in self.commits_out:
            future.failure(error) if error else future.success(None)
        self.commits_out = []


class FakeProducer:
    """Acknowledges on flush; ``fail_next`` makes the next sends fail with that error."""

    def __init__(self, effects: list[tuple[Any, ...]]) -> None:
        self.effects = effects
        self.fail_next: list[Exception] = []
        self.sent: list[dict[str, Any]] = []
        self._pending: list[tuple[Future, Exception | None]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> Future:
        future = Future()
        self._pending.append((future, self.fail_next.pop(0) if self.fail_next else None))
        self.effects.append(("send", topic, value))
        self.sent.append({"topic": topic, "key": key, "partition": partition, "headers": headers, "value": value})
        return future

    def flush(self, timeout: float | None = None) -> None:
        for future, error in self._pending:
            if error is None:
                future.success(None)
            else:
                future.failure(error)
        self._pending = []
        self.effects.append(("flush",))


class ScriptedScorer:
    """Fails with the scripted errors first, then scores everything as normal."""

    def __init__(self, errors: Sequence[Exception] = ()) -> None:
        self.errors = list(errors)
        self.calls = 0

    def score(self, events: Sequence[LogEvent]) -> list[Score]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [Score(False, 0.1, "v1")] * len(events)


class Harness:
    def __init__(self, scorer: ScriptedScorer, settings: ProcessorSettings = SETTINGS) -> None:
        self.effects: list[tuple[Any, ...]] = []
        self.consumer = FakeConsumer(self.effects)
        self.producer = FakeProducer(self.effects)
        self.printer = Printer("quiet")
        self.stop = threading.Event()
        self.pipeline = Pipeline(
            self.consumer,
            self.producer,
            scorer,
            kafka=KAFKA,
            settings=settings,
            printer=self.printer,
            stop=self.stop,
        )
        self.events = generate_normal_events(6, seed=8)

    def queue(self, tp: TopicPartition, values: list[bytes | None], first_offset: int = 0) -> None:
        self.consumer.queued[tp] = [consumer_record(tp, first_offset + i, v) for i, v in enumerate(values)]

    def kinds(self) -> list[str]:
        return [effect[0] for effect in self.effects if effect[0] != "poll"]

    def sent(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(e[2]) for e in self.effects if e[0] == "send" and e[1] == topic]

    def commits(self) -> list[dict[int, int]]:
        return [e[1] for e in self.effects if e[0] == "commit"]

    def commit_modes(self) -> list[str]:
        return [e[2] for e in self.effects if e[0] == "commit"]


def test_a_batch_is_produced_acknowledged_and_only_then_committed() -> None:
    h = Harness(ScriptedScorer())
    h.queue(P0, [h.events[0].to_json(), b"garbage", h.events[1].to_json()], first_offset=10)
    h.queue(P1, [h.events[2].to_json()], first_offset=3)

    assert h.pipeline.run_once() == 4

    assert h.kinds() == ["send"] * 4 + ["flush", "commit"]
    assert [v["event_id"] for v in h.sent("predictions")] == [e.event_id for e in h.events[:3]]
    [letter] = h.sent("dlq")
    assert (letter["partition"], letter["offset"]) == (0, 11) and letter["reason"].startswith("not JSON")
    assert h.commits() == [{0: 13, 1: 4}]
    assert (h.printer.consumed, h.printer.verdicts, h.printer.dead_lettered) == (4, 3, 1)


def test_while_the_scorer_is_down_nothing_is_produced_or_committed_and_partitions_stay_paused() -> None:
    down = ScoringUnavailableError("Connection refused")
    scorer = ScriptedScorer([down, down, down])
    h = Harness(scorer)
    h.queue(P0, [e.to_json() for e in h.events[:3]])

    assert h.pipeline.run_once() == 3

    assert scorer.calls == 4
    assert h.printer.retries == 3
    first_send = next(i for i, e in enumerate(h.effects) if e[0] == "send")
    holds = [e for e in h.effects[:first_send] if e[0] == "poll"][1:]  # after the poll that fetched the batch
    assert holds and all(paused == [0, 1] for _, paused in holds)
    assert [e[0] for e in h.effects[first_send:]] == ["send"] * 3 + ["flush", "commit", "resume"]
    assert h.commits() == [{0: 3}]


def test_stopping_while_the_scorer_is_down_commits_nothing_and_rewinds() -> None:
    scorer = ScriptedScorer([ScoringUnavailableError("Connection refused")] * 100)
    h = Harness(scorer)
    h.queue(P0, [e.to_json() for e in h.events[:2]], first_offset=5)
    h.queue(P1, [h.events[2].to_json()], first_offset=9)
    h.consumer.on_poll = lambda: h.stop.set() if scorer.calls >= 2 else None

    assert h.pipeline.run_once() == 0

    assert "send" not in h.kinds() and h.commits() == []
    assert sorted(e[1:] for e in h.effects if e[0] == "seek") == [(0, 5), (1, 9)]


def test_records_of_partitions_revoked_while_waiting_are_dropped_not_committed() -> None:
    scorer = ScriptedScorer([ScoringUnavailableError("HTTP 503: not ready")])
    h = Harness(scorer)
    h.queue(P0, [h.events[0].to_json()])
    h.queue(P1, [h.events[1].to_json(), b"{"])

    def rebalance_once() -> None:
        if scorer.calls == 1 and h.consumer.assigned == {P0, P1}:
            h.consumer.listener.on_partitions_revoked([P0, P1])
            h.consumer.assigned = {P0}
            h.consumer.listener.on_partitions_assigned([P0])

    h.consumer.on_poll = rebalance_once

    assert h.pipeline.run_once() == 0

    assert [v["event_id"] for v in h.sent("predictions")] == []  # P0 too was revoked (and given back)
    assert h.sent("dlq") == []
    assert h.commits() == []
    assert h.printer.consumed == 0  # they will be consumed again, and counted then
    # P0 came back with its old fetch position (as kafka-python keeps it): seek back so nothing is skipped.
    assert [e for e in h.effects if e[0] == "seek"] == [("seek", 0, 0)]


def test_records_of_partitions_kept_through_a_rebalance_are_still_handled() -> None:
    scorer = ScriptedScorer([ScoringUnavailableError("HTTP 503: not ready")])
    h = Harness(scorer)
    h.queue(P0, [h.events[0].to_json()])
    h.queue(P1, [h.events[1].to_json()])

    def revoke_p1() -> None:
        if scorer.calls == 1 and P1 in h.consumer.assigned:
            h.consumer.listener.on_partitions_revoked([P1])  # cooperative: only P1 moves
            h.consumer.assigned = {P0}

    h.consumer.on_poll = revoke_p1

    assert h.pipeline.run_once() == 1

    assert [v["event_id"] for v in h.sent("predictions")] == [h.events[0].event_id]
    assert h.commits() == [{0: 1}]


def test_records_kafka_failed_to_take_are_resent_before_committing() -> None:
    h = Harness(ScriptedScorer())
    h.producer.fail_next = [KafkaConnectionError("broker gone")]
    h.queue(P0, [e.to_json() for e in h.events[:3]])

    assert h.pipeline.run_once() == 3

    assert h.kinds()[:5] == ["send", "send", "send", "flush", "send"]
    assert h.kinds()[5:] == ["flush", "commit", "resume"]
    assert [v["event_id"] for v in h.sent("predictions")][3] == h.events[0].event_id
    assert h.printer.retries == 1


def test_a_record_kafka_will_never_take_is_a_crash_not_a_commit() -> None:
    h = Harness(ScriptedScorer())
    h.producer.fail_next = [MessageSizeTooLargeError("too big")]
    h.queue(P0, [h.events[0].to_json()], first_offset=4)

    with pytest.raises(MessageSizeTooLargeError):
        h.pipeline.run_once()

    assert h.commits() == []
    assert ("seek", 0, 4) in h.effects


def test_a_scorer_that_refuses_us_stops_the_loop_without_committing() -> None:
    h = Harness(ScriptedScorer([ScoringConfigError("401 missing or wrong X-API-Key")]))
    h.queue(P0, [h.events[0].to_json()])

    with pytest.raises(ScoringConfigError):
        h.pipeline.run()

    assert h.commits() == [] and "send" not in h.kinds()


def test_a_rebalance_while_filling_a_batch_hands_back_the_partitions_records() -> None:
    h = Harness(ScriptedScorer(), SETTINGS.model_copy(update={"batch_wait_ms": 200}))
    h.queue(P0, [e.to_json() for e in h.events[:2]], first_offset=0)
    h.queue(P1, [h.events[2].to_json()], first_offset=7)
    polls = 0

    def rebalance_on_second_poll() -> None:
        nonlocal polls
        polls += 1
        if polls == 2:  # P0 revoked and assigned back, P1 moves away; P0's fetch goes on from offset 2
            h.consumer.listener.on_partitions_revoked([P0, P1])
            h.consumer.assigned = {P0}
            h.consumer.listener.on_partitions_assigned([P0])
            h.queue(P0, [e.to_json() for e in h.events[3:5]], first_offset=2)

    h.consumer.on_poll = rebalance_on_second_poll

    assert h.pipeline.run_once() == 0

    assert "send" not in h.kinds() and h.commits() == []
    assert [e for e in h.effects if e[0] == "seek"] == [("seek", 0, 0)]  # from the first record held, not 2


def test_a_batch_done_while_the_last_commit_is_out_is_committed_with_it_at_once() -> None:
    h = Harness(ScriptedScorer())
    h.consumer.hold_commits = True  # the broker is slow to confirm
    h.queue(P0, [e.to_json() for e in h.events[:2]])
    assert h.pipeline.run_once() == 2
    h.queue(P0, [h.events[2].to_json()], first_offset=2)
    h.queue(P1, [h.events[3].to_json()], first_offset=7)

    assert h.pipeline.run_once() == 2

    # Both batches confirmed before a third is polled: a crash now would redo neither of them.
    assert h.commits() == [{0: 2}, {0: 3, 1: 8}]
    assert h.commit_modes() == ["async", "sync"]
    assert h.pipeline.metrics.registry.get_sample_value("processor_commits_waited_total") == 1

    h.queue(P0, [h.events[4].to_json()], first_offset=3)
    assert h.pipeline.run_once() == 1
    assert h.commits()[-1] == {0: 4} and h.commit_modes()[-1] == "async"  # the usual way again


def test_offsets_of_a_failed_commit_go_out_again_with_the_next_one() -> None:
    h = Harness(ScriptedScorer())
    h.consumer.hold_commits = True
    h.queue(P1, [h.events[0].to_json()], first_offset=4)
    h.pipeline.run_once()
    h.consumer.answer_commits(KafkaConnectionError("broker gone"))
    h.queue(P0, [h.events[1].to_json()])

    h.pipeline.run_once()  # resends P1's offset at once, then handles P0's record while it is out
    h.consumer.answer_commits(KafkaConnectionError("broker gone"))
    h.pipeline.run_once()

    assert h.commits() == [{1: 5}, {1: 5}, {0: 1, 1: 5}]


def test_a_partition_revoked_before_its_commit_is_confirmed_is_left_to_its_next_owner() -> None:
    h = Harness(ScriptedScorer())
    h.consumer.hold_commits = True
    h.queue(P0, [h.events[0].to_json()])
    h.queue(P1, [h.events[1].to_json()], first_offset=9)
    h.pipeline.run_once()
    h.consumer.answer_commits(KafkaConnectionError("broker gone"))
    h.consumer.listener.on_partitions_revoked([P1])
    h.consumer.assigned = {P0}

    assert h.pipeline.run_once() == 0

    assert h.commits() == [{0: 1, 1: 10}, {0: 1}]


def test_on_stop_what_was_handled_is_committed_before_run_returns() -> None:
    h = Harness(ScriptedScorer())
    h.consumer.hold_commits = True  # never answered: the broker is slow
    h.queue(P0, [e.to_json() for e in h.events[:3]])
    h.consumer.on_poll = lambda: h.stop.set() if h.commits() else None

    h.pipeline.run()

    assert h.commits() == [{0: 3}, {0: 3}]  # the asynchronous one, then the synchronous one on the way out
    assert h.kinds()[-1] == "commit"


def original_event(service: str, latency_ms: float = 200.0) -> bytes:
    """The original design's event: a float timestamp, no id, no label."""
    return orjson.dumps(
        {"timestamp": 1_767_225_600.25, "service": service, "latency_ms": latency_ms, "error_rate": 0.1}
    )


def test_keyless_events_of_services_owned_elsewhere_are_rekeyed_with_their_origin_then_committed() -> None:
    h = Harness(ScriptedScorer())
    repartition = KAFKA.repartition_topic
    services = ["auth", "payment", "auth", "orders", "payment"]
    h.consumer.queued[P0] = [
        consumer_record(P0, 40 + i, original_event(service), key=None) for i, service in enumerate(services)
    ]
    # No partition of the repartition topic is ours: the services' owners are other members.

    assert h.pipeline.run_once() == 5

    assert h.sent("predictions") == []
    forwarded = h.producer.sent
    # One record per partition of the repartition topic, holding that partition's events in order.
    partition_of = h.pipeline.delivery.partition_of
    expected: dict[int, list[int]] = {}
    for i, service in enumerate(services):
        expected.setdefault(partition_of(repartition, service.encode()) or 0, []).append(40 + i)
    assert sorted(f["partition"] for f in forwarded) == sorted(expected)
    for record in forwarded:
        assert record["topic"] == repartition and record["headers"] is None
        unpacked = forwarding.unpack(record["value"])
        assert list(unpacked.offsets) == expected[record["partition"]]
        assert set(unpacked.partitions) == {0} and unpacked.topic == "logs"
        assert unpacked.values == [original_event(services[o - 40]) for o in unpacked.offsets]  # bytes as sent
    assert h.commits() == [{0: 45}]


def test_a_forwarded_batch_is_scored_by_the_services_owner_and_committed_as_one_record() -> None:
    h = Harness(ScriptedScorer())
    rekeyed = TopicPartition(KAFKA.repartition_topic, 2)
    h.consumer.assigned |= {rekeyed}
    origins = [consumer_record(P1, 7 + i, original_event("auth"), key=None) for i in range(3)]
    [value] = forwarding.pack(origins)
    h.consumer.queued[rekeyed] = [ConsumerRecord(rekeyed.topic, 2, 0, 11, 0, 0, None, value, [], None, 1, 1, -1)]

    assert h.pipeline.run_once() == 3

    assert [v["event_id"] for v in h.sent("predictions")] == ["logs:1:7", "logs:1:8", "logs:1:9"]
    assert h.commits() == [{2: 12}]


def test_a_keyless_event_whose_service_partition_is_ours_is_scored_here_with_a_derived_id() -> None:
    h = Harness(ScriptedScorer())
    h.consumer.assigned |= {TopicPartition(KAFKA.repartition_topic, p) for p in range(3)}
    h.consumer.queued[P1] = [consumer_record(P1, 7, original_event("payment"), key=None)]

    assert h.pipeline.run_once() == 1

    [verdict] = h.sent("predictions")
    assert verdict["event_id"] == "logs:1:7"
    assert verdict["timestamp"] == 1_767_225_600.25 and verdict["event_time"] == 1_767_225_600.25
    assert "label" not in verdict  # what the producer did not send is not invented


def test_a_rekeyed_event_keeps_the_id_of_where_it_was_first_consumed() -> None:
    h = Harness(ScriptedScorer())
    rekeyed = TopicPartition(KAFKA.repartition_topic, 2)
    h.consumer.assigned |= {rekeyed}
    record = ConsumerRecord(
        rekeyed.topic, 2, 0, 0, 5000, 0, b"auth", original_event("auth"), [("origin", b"logs:0:40")], None, 1, 1, -1
    )
    h.consumer.queued[rekeyed] = [record]

    assert h.pipeline.run_once() == 1

    [verdict] = h.sent("predictions")
    assert verdict["event_id"] == "logs:0:40"  # the same id as if it had been scored where it was first read
    assert h.commits() == [{2: 1}]


def test_with_batch_timings_each_batch_handled_logs_where_its_time_went(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(ScriptedScorer(), SETTINGS.model_copy(update={"batch_timings": True}))
    h.queue(P0, [h.events[0].to_json(), h.events[1].to_json()])

    with caplog.at_level(logging.INFO, logger="anomaly_processor.timings"):
        assert h.pipeline.run_once() == 2
        assert h.pipeline.run_once() == 0  # nothing polled: no line
    h.pipeline.close()

    [line] = caplog.messages
    assert line.startswith("batch of 2 in ")
    for phase in ("poll", "decode", "score", "deliver"):
        assert f" {phase} " in line
