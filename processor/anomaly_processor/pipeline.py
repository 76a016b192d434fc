"""The processing loop: consume a micro-batch, dead-letter bad messages, score the rest, produce, print, commit.

Delivery is at-least-once: the offsets of a batch are committed only after every verdict and dead letter of
that batch was acknowledged by Kafka and printed. Whatever stops the loop before that (a crash, SIGKILL, a lost
partition) leaves the offsets uncommitted, and the batch is handled again by whoever owns the partitions next.

The commit itself is asynchronous: it is sent once the batch is acknowledged and completes while the next batch
is polled and scored (a commit costs a broker round trip of ~10 ms, a third of a small batch's cycle). At most
one commit is in flight; offsets not yet confirmed are sent again with the next one, and on stop the remainder
is committed synchronously.

Events whose key is not their service (the original design's producer sends no key) are re-keyed through
``REPARTITION_TOPIC``, as Kafka Streams does after ``selectKey``, unless this consumer owns their service's
partition of it: the pipeline consumes both topics, so a service's events are all scored in one place. A batch's
events bound for one partition travel as one record (``anomaly_processor.forwarding``), weighed as that many
events when batches are filled.

With a ``ContextualScorer`` and a ``restorer`` consumer, each service's state is kept in ``STATE_TOPIC`` in
step with the commits (``ChangelogState``): offsets are committed at most every ``STATE_COMMIT_INTERVAL_MS``,
after the state of the services seen since was acknowledged, and the state of an assigned partition is
restored before its events are scored.

While the ML service or Kafka is unavailable the same batch is retried with capped exponential backoff; the
assigned partitions stay paused and the consumer keeps polling, so it stays in its group without consuming more.

The loop is a short list of calls on its units: ``BatchConsumer`` (polling a batch, handing records back,
waiting paused), ``PartitionOwnership`` (rebalance epochs), ``Delivery`` (producing and waiting for acks),
``OffsetCommitter`` (commits), ``BatchScorer`` (scoring, retried and bisected), ``IncidentFeed`` (incident
records) and ``retry_after`` (one retry step), each in its own module; ``BATCH_TIMINGS=1`` logs where each
batch's time went (``timings``).
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kafka import TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError

from anomaly_processor import forwarding
from anomaly_processor.batch_scoring import BatchScorer, ScoredBatch
from anomaly_processor.batches import BatchConsumer
from anomaly_processor.changelog import ChangelogState, LocalStateStore
from anomaly_processor.commits import OffsetCommitter
from anomaly_processor.delivery import Delivery, Outgoing
from anomaly_processor.incident_feed import IncidentFeed
from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ml_client import HttpScorer, Scorer
from anomaly_processor.output import Printer
from anomaly_processor.ownership import OwnershipListener, PartitionOwnership
from anomaly_processor.records import ConsumedRecord, dead_letter_json, decode_batch, verdict_json
from anomaly_processor.retry import Backoff, RetryContext, describe, retriable, retry_after
from anomaly_processor.settings import ProcessorSettings
from anomaly_processor.timings import BatchTimings, NoTimings
from eventbus import ConsumerPort, KafkaSettings, ProducerPort
from streaming_detector.scorer import ContextualScorer

log = logging.getLogger(__name__)


def consumer_overrides(settings: ProcessorSettings) -> dict[str, Any]:
    """kafka-python consumer options for the processor (on top of ``eventbus.make_consumer``'s)."""
    return {
        "max_poll_records": settings.batch_max,
        "max_partition_fetch_bytes": 2 * 1024 * 1024,
        # Scoring, isolation of a rejected batch and waiting for acks happen between two polls.
        "max_poll_interval_ms": 600_000,
        # Heartbeats run on kafka-python's IO thread; a crashed processor's partitions move after 10 s, not 45 s.
        "session_timeout_ms": 10_000,
        # A member learns of a rebalance from a heartbeat: every 0.5 s, so PROCESSOR_WORKERS members joining at
        # start wait less for each other (make bench's end-to-end runs before and after were within noise).
        "heartbeat_interval_ms": 500,
        # kafka-python keeps one fetch in flight per broker and leaves out of it the partitions whose records
        # are still buffered here; the broker holds that fetch until a partition it names gets data. A record
        # arriving meanwhile on a left-out partition can wait the whole fetch.max.wait: 100 ms, not 500.
        "fetch_max_wait_ms": 100,
        "reconnect_backoff_max_ms": 5000,
        "client_id": "anomaly-processor",
        # A service's partition has the same number in LOGS_TOPIC and REPARTITION_TOPIC: by range, one member
        # owns both, so keyed and re-keyed events of a service meet in one state.
        "partition_assignment_strategy": (RangePartitionAssignor,),
    }


def producer_overrides() -> dict[str, Any]:
    """kafka-python producer options: each batch is flushed at its end, so lingering only helps batching."""
    return {
        "linger_ms": 20,
        "batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "reconnect_backoff_max_ms": 5000,
        "client_id": "anomaly-processor",
    }


class Pipeline:
    """Consumes ``LOGS_TOPIC`` and writes verdicts to ``PREDICTIONS_TOPIC``, bad messages to ``DLQ_TOPIC``.

    ``consumer`` must not be subscribed yet (the pipeline subscribes it with its rebalance listener) and
    must not auto-commit; ``scorer`` is any ``Scorer`` (``HttpScorer`` by default, in-process for evaluation).
    """

    def __init__(
        self,
        consumer: ConsumerPort,
        producer: ProducerPort,
        scorer: Scorer,
        *,
        kafka: KafkaSettings,
        settings: ProcessorSettings,
        printer: Printer,
        stop: threading.Event | None = None,
        scorer_name: str = "the scorer",
        metrics: ProcessorMetrics | None = None,
        restorer: ConsumerPort | None = None,
        notify: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._kafka = kafka
        self._settings = settings
        self.printer = printer
        self.stop = stop or threading.Event()
        self.metrics = metrics or ProcessorMetrics()
        self.ownership = PartitionOwnership(consumer, on_revoke=lambda tp: self.commits.forget(tp))
        self.batches = BatchConsumer(
            consumer,
            self.ownership,
            batch_max=settings.batch_max,
            batch_wait_ms=settings.batch_wait_ms,
            printer=printer,
            metrics=self.metrics,
            stop=self.stop,
            weight=self._events_in,
        )
        retries = RetryContext(printer, self.stop, self.batches.hold, self._backoff, kafka.kafka_bootstrap_servers)
        self.delivery = Delivery(producer, retries)
        self.incidents = IncidentFeed(settings, kafka.incidents_topic, self.delivery, printer, self.metrics, notify)
        self.scoring = BatchScorer(
            scorer,
            self.batches,
            printer=printer,
            metrics=self.metrics,
            stop=self.stop,
            backoff=self._backoff,
            scorer_name=scorer_name,
        )
        self.commits = OffsetCommitter(consumer, self.ownership, self.metrics, retries)
        self.state: ChangelogState | None = None
        if restorer is not None and isinstance(scorer, ContextualScorer):
            self.state = self._keep_state(scorer, restorer, producer)
        self._behind = False  # the scorer learned a batch that was not handled (its records are redone)
        self.timings = _timings(scorer) if settings.batch_timings else NoTimings()
        consumer.subscribe([kafka.logs_topic, kafka.repartition_topic], listener=OwnershipListener(self.ownership))

    def _keep_state(self, scorer: ContextualScorer, restorer: ConsumerPort, producer: ProducerPort) -> ChangelogState:
        topic = self._kafka.repartition_topic
        store = LocalStateStore(lambda service: self.delivery.partition_of(topic, service.encode()) or 0,
                                self._settings.state_dir)  # fmt: skip
        scorer.keep_state_in(store, self._settings.state_max_services)
        state = ChangelogState(
            scorer,
            store,
            self.delivery,
            restorer,
            self.ownership,
            self._consumer,
            self.commits.positions,
            kafka=self._kafka,
            interval_ms=self._settings.state_commit_interval_ms,
            metrics=self.metrics,
        )
        state.check_partitions(producer.partitions_for)
        self.ownership.watchers.append(state)
        return state

    def close(self) -> None:
        self.timings.close()
        if self.state is not None:
            self.state.close()

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Handle batches until ``stop`` is set; the batch in hand is finished first when possible."""
        backoff = self._backoff()
        self.metrics.loop_running(True)
        try:
            self._run(backoff)
        except Exception:
            self.commits.commit_handled_once()  # what was acknowledged need not be redone after a fix and restart
            raise
        else:
            self.commit_handled()
        finally:
            self.metrics.loop_running(False)

    def _run(self, backoff: Backoff) -> None:
        while not self.stop.is_set():
            try:
                self.run_once()
                backoff.reset()
            except KafkaError as exc:
                if not retriable(exc):
                    raise
                reason = describe(exc)
                retry_after(
                    backoff,
                    self.stop.wait,
                    self.printer,
                    log,
                    "Kafka call failed (%s); retrying in %.1fs",
                    reason,
                    shown=f"Kafka unavailable at {self._kafka.kafka_bootstrap_servers}, "
                    f"retrying in {{delay}}s ({reason})",
                )

    def run_once(self) -> int:
        """Poll one batch and handle it; return how many events were handled (their commit is on its way)."""
        self.timings.begin()
        handled = self._run_once()
        self.timings.end(handled)
        return handled

    def _run_once(self) -> int:
        timings = self.timings
        self.metrics.beat()
        with timings.phase("commit"):
            self.commits.send()
        with timings.phase("poll"):
            records, epoch = self.batches.poll_batch()
        if self.state is not None and self.state.pending:
            try:
                with timings.phase("restore"):
                    restored = self.state.catch_up(self.stop)  # before any event of an assigned partition is scored
            except BaseException:
                self.batches.rewind(records)  # the restore is retried first, then these are polled again
                raise
            if self.stop.is_set():
                self.batches.rewind(records)
                return 0
            # Those partitions were sought to where their saved state left off: their records come again.
            records = [r for r in records if r.partition not in restored]
            if restored:
                topics = (self._kafka.logs_topic, self._kafka.repartition_topic)
                self.batches.forget_carried({(topic, p) for topic in topics for p in restored})
        if not records:
            self.incidents.resolve_idle()
            self.printer.tick()
            if self.state is not None and not self._behind and self.state.due():
                try:
                    self._release(self.ownership.current_epoch())
                finally:
                    self.batches.resume_paused()  # waiting for Kafka's acks paused every partition
            return 0
        committed: int | None = None
        try:
            committed = self._handle(records, epoch)
            return committed or 0
        finally:
            self._behind = committed is None
            if committed is None:
                self.batches.rewind(records)
            self.batches.resume_paused()

    def commit_handled(self) -> bool:
        """Commit synchronously every offset handled and not yet confirmed (saving the state first, unless the
        scorer learned a batch that was not handled); False if some were not."""
        if self.state is not None and not self._behind:
            self._release(self.ownership.current_epoch())
        return self.commits.commit_handled()

    def _release(self, epoch: int) -> bool:
        """Save the state of the services seen since the last save, then let the held offsets be committed."""
        assert self.state is not None
        with self.timings.phase("state"):
            saved = self.state.save(epoch)
        if not saved:
            return False
        self.commits.release()
        return True

    def _handle(self, records: list[ConsumedRecord], epoch: int) -> int | None:
        """Score, produce, print and commit one batch (return its events); None when given up (on shutdown)
        before committing."""
        timings = self.timings
        with timings.phase("decode"):
            decoded = decode_batch(records, self._owns_service, self._kafka.repartition_topic)
        started = time.perf_counter()
        with timings.phase("score"):
            scored = self.scoring.score(decoded, epoch)
        if scored is None:
            return None
        self.metrics.scoring_seconds.observe(time.perf_counter() - started)
        scored.verdicts, incidents = self.incidents.observe(scored.verdicts)
        outgoing = [
            Outgoing(self._kafka.predictions_topic, event.key(), verdict_json(event, score))
            for event, score in scored.verdicts
        ]
        outgoing.extend(
            Outgoing(self._kafka.dlq_topic, record.key, dead_letter_json(record, reason))
            for record, reason in scored.dead_letters
        )
        outgoing.extend(self.incidents.records(incidents))
        if decoded.forward:
            outgoing.extend(self._forwarded(decoded.forward))
        for record, reason in scored.dead_letters:
            log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        with timings.phase("deliver"):
            delivered = self.delivery.deliver(outgoing)
        if not delivered:
            return None
        handled = self.ownership.still_owned(records, epoch)
        events = self._events(handled)
        with timings.phase("print"):
            self.printer.batch(events, scored.verdicts, scored.dead_letters)
        self.incidents.announce(incidents)
        self._count(events, scored)
        if decoded.forward:
            self.metrics.rekeyed.inc(len(decoded.forward))
        if self.state is None:
            self.commits.queue(handled, epoch)
        else:
            self.commits.queue(handled, epoch, release=False)
            if self.state.due():
                self._release(epoch)
        return events

    def _forwarded(self, forward: list[tuple[ConsumedRecord, bytes]]) -> Iterator[Outgoing]:
        """The events to re-key, one record (``forwarding.pack``) per partition of the repartition topic."""
        topic = self._kafka.repartition_topic
        bound: dict[tuple[int | None, bytes | None], list[ConsumedRecord]] = {}
        for record, key in forward:
            partition = self.delivery.partition_of(topic, key)
            # Without the topic's metadata (not seen in practice: it is subscribed) the producer routes by key.
            bound.setdefault((partition, None if partition is not None else key), []).append(record)
        for (to, routed_by), records in bound.items():
            for value in forwarding.pack(records):
                yield Outgoing(topic, routed_by, value, None, None, to)

    def _events_in(self, record: ConsumedRecord) -> int:
        if record.topic != self._kafka.repartition_topic or not record.value:
            return 1
        return forwarding.forwarded_count(record.value)

    def _events(self, records: list[ConsumedRecord]) -> int:
        rekeyed = self._kafka.repartition_topic
        return len(records) + sum(self._events_in(r) - 1 for r in records if r.topic == rekeyed)

    def _count(self, handled: int, scored: ScoredBatch) -> None:
        metrics = self.metrics
        metrics.consumed.inc(handled)
        metrics.batch_size.observe(handled)
        metrics.verdicts.inc(len(scored.verdicts))
        anomalies = sum(1 for _, score in scored.verdicts if score.anomaly)
        if anomalies:
            metrics.anomalies.inc(anomalies)
        metrics.observe_dead_letters(reason for _, reason in scored.dead_letters)

    def _owns_service(self, key: bytes) -> bool:
        """True when this consumer owns the partition of the repartition topic of the service keyed ``key``."""
        partition = self.delivery.partition_of(self._kafka.repartition_topic, key)
        return TopicPartition(self._kafka.repartition_topic, partition) in self._consumer.assignment()

    def _backoff(self) -> Backoff:
        return Backoff(self._settings.retry_backoff_initial_s, self._settings.retry_backoff_max_s)


def _timings(scorer: Scorer) -> BatchTimings:
    """Batch timings that tell the ML hop apart when the scorer (or the one in its context) asks over HTTP."""
    client = getattr(scorer, "client", scorer)
    if isinstance(client, HttpScorer):
        return BatchTimings(lambda: client.waited_s)
    return BatchTimings()
