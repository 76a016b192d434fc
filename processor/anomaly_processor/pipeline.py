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
partition of it: the pipeline consumes both topics, so a service's events are all scored in one place.

While the ML service or Kafka is unavailable the same batch is retried with capped exponential backoff; the
assigned partitions stay paused and the consumer keeps polling, so it stays in its group without consuming more.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import CommitFailedError, IllegalStateError, KafkaError, KafkaTimeoutError
from kafka.future import Future
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from anomaly_processor.errors import ScoringProtocolError, ScoringRejectedError, ScoringUnavailableError
from anomaly_processor.incidents import IncidentTracker
from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.output import Printer
from anomaly_processor.records import (
    ORIGIN_HEADER,
    ConsumedRecord,
    DecodedBatch,
    dead_letter_json,
    decode_batch,
    origin_of,
    verdict_json,
)
from anomaly_processor.retry import Backoff
from anomaly_processor.scoring import Score, Scorer
from anomaly_processor.settings import ProcessorSettings
from eventbus import KafkaSettings, LogEvent

log = logging.getLogger(__name__)

IDLE_POLL_MS = 500  # how long one poll waits for a first record; bounds how late a stop request is noticed
HOLD_POLL_MS = 500  # polls while waiting to retry, to stay in the group
FLUSH_SLICE_S = 1.0  # producer.flush waits in slices so the consumer can keep polling in between
STOP_GRACE_S = 10.0  # on stop, how long to still wait for Kafka to acknowledge the batch in hand
COMMIT_TIMEOUT_MS = 5000  # one commit attempt; failures are retried with backoff


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


def commit_offsets(records: Sequence[ConsumedRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """Per partition, the offset after the last record handled: what to commit once they are all done."""
    last: dict[TopicPartition, ConsumedRecord] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        seen = last.get(tp)
        if seen is None or record.offset > seen.offset:
            last[tp] = record
    return {tp: OffsetAndMetadata(record.offset + 1, "", _leader_epoch(record)) for tp, record in last.items()}


def _leader_epoch(record: ConsumedRecord) -> int:
    epoch = getattr(record, "leader_epoch", None)
    return epoch if isinstance(epoch, int) else -1


class KeyPartitioner:
    """kafka-python's default partitioning of keyed records (murmur2 of the key), computed once per key.

    Hashing every record's key in pure Python costs more than the rest of ``send``'s routing; a batch
    has few distinct keys (services). Records without a key are left to the producer.
    """

    def __init__(self, producer: KafkaProducer) -> None:
        self._producer = producer
        self._partitions: dict[str, list[int]] = {}
        self._cache: dict[tuple[str, bytes], int] = {}

    def __call__(self, topic: str, key: bytes | None) -> int | None:
        if key is None:
            return None
        partition = self._cache.get((topic, key))
        if partition is None:
            partitions = self._partitions.get(topic)
            if partitions is None:
                partitions = self._partitions[topic] = sorted(self._producer.partitions_for(topic))
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            self._cache[(topic, key)] = partition
        return partition


@dataclass(frozen=True)
class Outgoing:
    """A record to produce: a verdict, a dead letter, or an event re-keyed by service."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    timestamp_ms: int | None = None


@dataclass
class ScoredBatch:
    """A batch's outcome: verdicts, and dead letters (undecodable, or rejected by the scorer)."""

    verdicts: list[tuple[LogEvent, Score]]
    dead_letters: list[tuple[ConsumedRecord, str]]


def score_isolating(scorer: Scorer, events: Sequence[LogEvent]) -> tuple[list[Score | None], list[tuple[int, str]]]:
    """Score ``events``; when the scorer rejects a batch, bisect it to find the events it rejects.

    Returns the scores (``None`` for rejected events) and ``(index, reason)`` for each rejected event, so
    valid events are never lost with the bad ones. ``ScoringUnavailableError`` propagates: retry it all.
    """
    scores: list[Score | None] = [None] * len(events)
    rejected: list[tuple[int, str]] = []
    pending = [(0, len(events))] if events else []
    while pending:
        start, stop = pending.pop()
        try:
            scores[start:stop] = scorer.score(events[start:stop])
        except ScoringRejectedError as exc:
            if stop - start == 1:
                rejected.append((start, f"ML service rejected the event ({exc.status}): {exc.detail}"))
            else:
                middle = (start + stop) // 2
                pending.extend([(middle, stop), (start, middle)])
    rejected.sort()
    return scores, rejected


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: it only records what happened, the loop acts on it."""

    def __init__(self, pipeline: "Pipeline") -> None:
        self._pipeline = pipeline

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._pipeline._on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._pipeline._on_assigned(list(assigned))


class Pipeline:
    """Consumes ``LOGS_TOPIC`` and writes verdicts to ``PREDICTIONS_TOPIC``, bad messages to ``DLQ_TOPIC``.

    ``consumer`` must not be subscribed yet (the pipeline subscribes it with its rebalance listener) and
    must not auto-commit; ``scorer`` is any ``Scorer`` (``HttpScorer`` by default, in-process for evaluation).
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        scorer: Scorer,
        *,
        kafka: KafkaSettings,
        settings: ProcessorSettings,
        printer: Printer,
        stop: threading.Event | None = None,
        scorer_name: str = "the scorer",
        metrics: ProcessorMetrics | None = None,
        notify: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._scorer = scorer
        self._kafka = kafka
        self._settings = settings
        self.printer = printer
        self.stop = stop or threading.Event()
        self._scorer_name = scorer_name
        self._partition_of = KeyPartitioner(producer)
        self.metrics = metrics or ProcessorMetrics()
        self.incidents = IncidentTracker(
            settings.incident_resolve_s, settings.incident_resolve_events, settings.incident_idle_resolve_s
        )
        self._notify = notify  # hands delivered incident records to the alerting thread (never blocks)
        self._lock = threading.Lock()
        self._epoch = 0  # counts revocations
        self._revoked_at: dict[TopicPartition, int] = {}  # partition -> epoch of its last revocation
        self._holding = False
        # Offsets of records handled (acknowledged, printed) and not yet confirmed committed, per partition.
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self._commit_in_flight: tuple[Future, dict[TopicPartition, OffsetAndMetadata]] | None = None
        consumer.subscribe([kafka.logs_topic, kafka.repartition_topic], listener=_Listener(self))

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Handle batches until ``stop`` is set; the batch in hand is finished first when possible."""
        backoff = self._backoff()
        self.metrics.loop_running(True)
        try:
            self._run(backoff)
        except Exception:
            self._commit_handled_once()  # what was acknowledged need not be redone after a fix and restart
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
                if not _retriable(exc):
                    raise
                delay = backoff.next_delay()
                log.warning("Kafka call failed (%s); retrying in %.1fs", _describe(exc), delay)
                self.printer.retry(
                    f"Kafka unavailable at {self._kafka.kafka_bootstrap_servers}, "
                    f"retrying in {delay:.1f}s ({_describe(exc)})"
                )
                self.stop.wait(delay)

    def run_once(self) -> int:
        """Poll one batch and handle it; return how many records were handled (their commit is on its way)."""
        self.metrics.beat()
        self._send_commit()
        records, epoch = self._poll_batch()
        if not records:
            self._resolve_idle()
            self.printer.tick()
            return 0
        committed: int | None = None
        try:
            committed = self._handle(records, epoch)
            return committed or 0
        finally:
            if committed is None:
                self._rewind(records)
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)

    def _poll_batch(self) -> tuple[list[ConsumedRecord], int]:
        """Up to ``BATCH_MAX`` records: wait for a first one, then up to ``BATCH_WAIT_MS`` to fill the batch."""
        chunks: list[tuple[int, list[ConsumedRecord]]] = []
        count = 0
        deadline: float | None = None
        wait_ms = IDLE_POLL_MS
        while count < self._settings.batch_max and not self.stop.is_set():
            polled = self._consumer.poll(timeout_ms=wait_ms, max_records=self._settings.batch_max - count)
            records = [record for batch in polled.values() for record in batch]
            if records:
                chunks.append((self._current_epoch(), records))
                count += len(records)
                if deadline is None:
                    deadline = time.monotonic() + self._settings.batch_wait_ms / 1000
            if deadline is None:
                break
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                break
        epoch = self._current_epoch()
        records = [record for _, chunk in chunks for record in chunk]
        stale: set[tuple[str, int]] = set()
        for polled_at, chunk in chunks:
            revoked = self._revoked_since(polled_at)
            stale.update((r.topic, r.partition) for r in chunk if (r.topic, r.partition) in revoked)
        if stale:
            # Polled before a rebalance: hand these partitions' records back rather than risk a gap.
            dropped = [r for r in records if (r.topic, r.partition) in stale]
            records = [r for r in records if (r.topic, r.partition) not in stale]
            log.info("rebalanced while filling the batch: %d records of %s will be polled again", len(dropped), stale)
            self._rewind(dropped)
        if records and log.isEnabledFor(logging.DEBUG):
            log.debug("batch of %d records: %s", len(records), _ranges(records))
        return records, epoch

    def _handle(self, records: list[ConsumedRecord], epoch: int) -> int | None:
        """Score, produce, print and commit one batch; None when given up (on shutdown) before committing."""
        decoded = decode_batch(records, self._owns_service, self._kafka.repartition_topic)
        started = time.perf_counter()
        scored = self._score_with_retry(decoded, epoch)
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
        outgoing.extend(self._incident_records(incidents))
        outgoing.extend(
            Outgoing(
                self._kafka.repartition_topic,
                event.key(),
                record.value,
                [(ORIGIN_HEADER, origin_of(record).event_id.encode())],
                record.timestamp,
            )
            for record, event in decoded.forward
        )
        for record, reason in scored.dead_letters:
            log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        if not self._deliver(outgoing):
            return None
        handled = [record for record in records if self._owned_since(record, epoch)]
        self.printer.batch(len(handled), scored.verdicts, scored.dead_letters)
        self._announce(incidents)
        self._count(len(handled), scored)
        if decoded.forward:
            self.metrics.rekeyed.inc(len(decoded.forward))
        self._commit_later(handled, epoch)
        return len(handled)

    def _count(self, handled: int, scored: ScoredBatch) -> None:
        metrics = self.metrics
        metrics.consumed.inc(handled)
        metrics.batch_size.observe(handled)
        metrics.verdicts.inc(len(scored.verdicts))
        anomalies = sum(1 for _, score in scored.verdicts if score.anomaly)
        if anomalies:
            metrics.anomalies.inc(anomalies)
        metrics.observe_dead_letters(reason for _, reason in scored.dead_letters)

    def _incident_records(self, incidents: list[dict[str, Any]]) -> list[Outgoing]:
        topic = self._kafka.incidents_topic
        return [Outgoing(topic, record["service"].encode(), orjson.dumps(record)) for record in incidents]

    def _announce(self, incidents: list[dict[str, Any]]) -> None:
        """Incident records acknowledged by Kafka: print them, count them, hand them to the alerting thread."""
        if not incidents:
            return
        self.printer.incidents(incidents)
        self.metrics.observe_incidents(incidents, self.incidents.open)
        if self._notify is not None:
            self._notify(incidents)

    def _resolve_idle(self) -> None:
        """While no events arrive, resolve the incidents of services silent for too long (wall clock)."""
        expired = self.incidents.expire()
        if expired and self._deliver(self._incident_records(expired)):
            self._announce(expired)

    def _observe_lag(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Lag of each partition just committed: the highwater the consumer last fetched minus the commit."""
        assigned = self._consumer.assignment()
        for tp, committed in offsets.items():
            if tp not in assigned:
                continue  # revoked since: its new owner reports it
            try:
                highwater = self._consumer.highwater(tp)
            except IllegalStateError:  # revoked this very moment
                continue
            if highwater is not None:
                self.metrics.set_lag(tp.topic, tp.partition, highwater - committed.offset)

    # -- scoring -------------------------------------------------------------------------------------------

    def _score_with_retry(self, decoded: DecodedBatch, epoch: int) -> ScoredBatch | None:
        backoff = self._backoff()
        while True:
            try:
                scores, rejected = score_isolating(self._scorer, decoded.events)
            except ScoringUnavailableError as exc:
                if self.stop.is_set():
                    log.warning(
                        "stopping while %s is unavailable: %d events left uncommitted",
                        self._scorer_name,
                        len(decoded.events),
                    )
                    return None
                delay = backoff.next_delay()
                self.metrics.scoring_retries.inc()
                if isinstance(exc, ScoringProtocolError):
                    log.error("%s broke the scoring contract: %s", self._scorer_name, exc.reason)
                log.warning(
                    "scoring %d events failed (attempt %d): %s; retrying in %.1fs",
                    len(decoded.events),
                    backoff.attempts,
                    exc.reason,
                    delay,
                )
                self.printer.retry(
                    f"ML service unavailable at {self._scorer_name}, retrying in {delay:.1f}s ({exc.reason})"
                )
                self._hold(delay)
                decoded = self._drop_lost(decoded, epoch)
                continue
            if backoff.attempts:
                self.printer.notice(f"ML service at {self._scorer_name} is back after {backoff.attempts} retries.")
            break
        verdicts = [(event, score) for event, score in zip(decoded.events, scores, strict=True) if score is not None]
        dead_letters = list(decoded.refused)
        for index, reason in rejected:
            record = decoded.event_records[index]
            log.warning(
                "scorer rejected event %s at %s[%d]@%d: %s",
                decoded.events[index].event_id,
                record.topic,
                record.partition,
                record.offset,
                reason,
            )
            dead_letters.append((record, reason))
        return ScoredBatch(verdicts, dead_letters)

    def _rewind(self, records: Sequence[ConsumedRecord]) -> None:
        """Seek back to the first of ``records`` in each partition still assigned, so they are polled again.

        kafka-python keeps the fetch position of a partition that is revoked and assigned back in one
        rebalance, so records dropped from a batch must be sought back to, or they would be skipped.
        Partitions no longer ours need nothing: their next owner starts at the committed offset.
        """
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        assigned = self._consumer.assignment()
        for tp, offset in first.items():
            if tp not in assigned:
                continue
            try:
                self._consumer.seek(tp, offset)
            except (KafkaError, AssertionError, ValueError) as exc:  # revoked meanwhile: its next owner redoes it
                log.warning("could not seek %s back to %d (%s)", tp, offset, exc)

    def _drop_lost(self, decoded: DecodedBatch, epoch: int) -> DecodedBatch:
        """Without the records of partitions revoked while we waited; they are polled again by their owner."""
        lost = self._revoked_since(epoch)
        if not lost:
            return decoded
        kept = DecodedBatch()
        dropped: list[ConsumedRecord] = []
        for event, record in zip(decoded.events, decoded.event_records, strict=True):
            if (record.topic, record.partition) in lost:
                dropped.append(record)
            else:
                kept.events.append(event)
                kept.event_records.append(record)
        for record, reason in decoded.refused:
            if (record.topic, record.partition) in lost:
                dropped.append(record)
            else:
                kept.refused.append((record, reason))
        for record, event in decoded.forward:
            if (record.topic, record.partition) in lost:
                dropped.append(record)
            else:
                kept.forward.append((record, event))
        if dropped:
            log.info("partitions %s were revoked while waiting: %d records will be polled again", lost, len(dropped))
            self._rewind(dropped)
        return kept

    # -- producing -----------------------------------------------------------------------------------------

    def _deliver(self, outgoing: list[Outgoing]) -> bool:
        """Produce every record and wait for its acknowledgement, resending failures; False if stopped first."""
        backoff = self._backoff()
        pending = outgoing
        while pending:
            sent: list[tuple[Outgoing, Any]] = []
            failed: list[Outgoing] = []
            reason = ""
            for position, item in enumerate(pending):
                try:
                    partition = self._partition_of(item.topic, item.key)
                    future = self._producer.send(
                        item.topic,
                        value=item.value,
                        key=item.key,
                        partition=partition,
                        headers=item.headers,
                        timestamp_ms=item.timestamp_ms,
                    )
                    sent.append((item, future))
                except KafkaTimeoutError as exc:  # no metadata or no buffer space within max_block_ms
                    failed = list(pending[position:])
                    reason = _describe(exc)
                    break
            if not self._wait_for_acks(len(sent)):
                log.warning("stopping while Kafka is unavailable: %d records not acknowledged", len(sent))
                return False
            for item, future in sent:
                if future.succeeded():
                    continue
                error = future.exception
                if error is not None and not _retriable(error):
                    raise error  # e.g. authorization or a record too large: a bug or config to fix, not to retry
                reason = reason or (_describe(error) if error is not None else "not acknowledged")
                failed.append(item)
            if not failed:
                if backoff.attempts:
                    self.printer.notice(f"Kafka at {self._kafka.kafka_bootstrap_servers} is back.")
                return True
            if self.stop.is_set():
                log.warning("stopping while Kafka is unavailable: %d records not acknowledged", len(failed))
                return False
            delay = backoff.next_delay()
            log.warning(
                "%d of %d records were not acknowledged (%s); resending in %.1fs",
                len(failed),
                len(pending),
                reason,
                delay,
            )
            self.printer.retry(
                f"Kafka unavailable at {self._kafka.kafka_bootstrap_servers}, "
                f"resending {len(failed)} records in {delay:.1f}s ({reason})"
            )
            self._hold(delay)
            pending = failed
        return True

    def _wait_for_acks(self, count: int) -> bool:
        """Wait until every record sent is acknowledged or failed; False if asked to stop while Kafka is silent."""
        waited = 0.0
        while True:
            try:
                self._producer.flush(timeout=FLUSH_SLICE_S)
                if waited:
                    self.printer.notice(f"Kafka acknowledged the {count} records after {waited:.0f}s.")
                return True
            except KafkaTimeoutError:
                waited += FLUSH_SLICE_S
            if self.stop.is_set() and waited >= STOP_GRACE_S:
                return False
            if waited == FLUSH_SLICE_S:
                self.printer.notice(
                    f"Kafka at {self._kafka.kafka_bootstrap_servers} is slow or unavailable: "
                    f"waiting for it to acknowledge {count} records..."
                )
            elif int(waited) % 10 == 0:
                log.warning("still waiting for Kafka to acknowledge %d records (%.0fs)", count, waited)
            self._hold(0)

    # -- committing ----------------------------------------------------------------------------------------

    def _commit_later(self, handled: Sequence[ConsumedRecord], epoch: int) -> None:
        """Queue the offsets of ``handled`` (acknowledged and printed) for commit, and send a commit if none is out."""
        offsets = commit_offsets(handled)
        with self._lock:  # atomic with a revocation, which drops the revoked partitions' offsets
            for tp, om in offsets.items():
                if self._revoked_at.get(tp, -1) > epoch:
                    continue
                held = self._uncommitted.get(tp)
                if held is None or om.offset > held.offset:
                    self._uncommitted[tp] = om
        if self._commit_in_flight is not None and not self._commit_in_flight[0].is_done:
            # The last batch's commit is still out: commit both now rather than let a third batch's worth of
            # handled records pile up unconfirmed, so a crash redoes at most the batch in hand and the one before.
            self.metrics.commits_waited.inc()
            self.commit_handled()
            return
        self._send_commit()

    def _send_commit(self) -> None:
        """Settle the commit in flight if it is done, then send every offset not yet confirmed (one at a time,
        so a later commit can never be overtaken by an earlier one)."""
        if self._commit_in_flight is not None:
            future, sent = self._commit_in_flight
            if not future.is_done:
                return
            self._commit_in_flight = None
            self._settle(future, sent)
        offsets = self._unconfirmed()
        if offsets:
            self._commit_in_flight = (self._consumer.commit_async(offsets), offsets)

    def _unconfirmed(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """A copy of the offsets handled and not yet confirmed committed."""
        with self._lock:
            return dict(self._uncommitted)

    def _settle(self, future: Future, sent: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if future.failed():
            # Kept in _uncommitted: the next commit carries them (a revoked partition's were dropped).
            log.warning("commit of %s failed (%s): sent again with the next one", _offsets_text(sent), future.exception)
            return
        self._confirm(sent)

    def _confirm(self, committed: dict[TopicPartition, OffsetAndMetadata]) -> None:
        with self._lock:
            for tp, om in committed.items():
                held = self._uncommitted.get(tp)
                if held is not None and held.offset <= om.offset:
                    del self._uncommitted[tp]
        log.debug("committed %s", _offsets_text(committed))
        self._observe_lag(committed)

    def _commit_handled_once(self) -> None:
        offsets = self._unconfirmed()
        if offsets:
            try:
                self._consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
            except KafkaError as exc:
                log.warning("commit of %s failed (%s): these records may be handled again", _offsets_text(offsets), exc)

    def commit_handled(self) -> bool:
        """Commit synchronously every offset handled and not yet confirmed (on stop, or when the last commit is
        still out as the next batch is done); False if some were not."""
        offsets = self._unconfirmed()
        if not offsets:
            return True
        committed = self._commit(offsets, self._current_epoch())
        if committed:
            self._commit_in_flight = None  # the synchronous commit went out after it and covers it
            self._confirm(offsets)
        return committed

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], epoch: int) -> bool:
        """Commit ``offsets``, retrying while Kafka is unavailable; False if they were not committed."""
        backoff = self._backoff()
        while offsets:
            try:
                self._consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
                if backoff.attempts:
                    self.printer.notice(f"Kafka at {self._kafka.kafka_bootstrap_servers} is back: offsets committed.")
                return True
            except CommitFailedError as exc:
                log.warning("commit refused, the group rebalanced (%s): these records may be handled again", exc)
                return False
            except KafkaError as exc:
                if not _retriable(exc) or self.stop.is_set():
                    log.warning("commit of %s failed (%s): these records may be handled again", offsets, _describe(exc))
                    return False
                delay = backoff.next_delay()
                log.warning("commit failed (%s); retrying in %.1fs", _describe(exc), delay)
                self.printer.retry(
                    f"Kafka unavailable at {self._kafka.kafka_bootstrap_servers}, "
                    f"retrying the commit in {delay:.1f}s ({_describe(exc)})"
                )
                self._hold(delay)
                lost = self._revoked_since(epoch)
                offsets = {tp: om for tp, om in offsets.items() if (tp.topic, tp.partition) not in lost}
        return False

    # -- waiting while staying in the group ----------------------------------------------------------------

    def _hold(self, seconds: float) -> None:
        """Wait ``seconds`` (less if stopped) with all partitions paused, polling to keep group membership."""
        deadline = time.monotonic() + seconds
        self._holding = True
        try:
            while True:
                assignment = self._consumer.assignment()
                if assignment:
                    self._consumer.pause(*assignment)
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                polled = self._consumer.poll(timeout_ms=max(0, min(remaining_ms, HOLD_POLL_MS)))
                for tp, records in polled.items():
                    # Assigned during the poll and returned before we could pause it: put the records back.
                    self._consumer.seek(tp, records[0].offset)
                self.printer.tick()
                self.metrics.beat()
                if remaining_ms <= HOLD_POLL_MS or self.stop.is_set():
                    return
        finally:
            self._holding = False

    # -- rebalancing (called on kafka-python's IO thread) --------------------------------------------------

    def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        with self._lock:
            self._epoch += 1
            for tp in revoked:
                self._revoked_at[TopicPartition(tp.topic, tp.partition)] = self._epoch
                # Its next owner starts from the last confirmed commit; a late commit of ours could move it back.
                self._uncommitted.pop(TopicPartition(tp.topic, tp.partition), None)
                self.metrics.forget_partition(tp.topic, tp.partition)
        if revoked:
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned:
            log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
            if self._holding:
                self._consumer.pause(*assigned)

    def _owns_service(self, event: LogEvent) -> bool:
        """True when this consumer owns the event's service's partition of the repartition topic."""
        partition = self._partition_of(self._kafka.repartition_topic, event.key())
        return TopicPartition(self._kafka.repartition_topic, partition) in self._consumer.assignment()

    def _current_epoch(self) -> int:
        with self._lock:
            return self._epoch

    def _revoked_since(self, epoch: int) -> set[tuple[str, int]]:
        with self._lock:
            return {(tp.topic, tp.partition) for tp, at in self._revoked_at.items() if at > epoch}

    def _owned_since(self, record: ConsumedRecord, epoch: int) -> bool:
        with self._lock:
            return self._revoked_at.get(TopicPartition(record.topic, record.partition), -1) <= epoch

    def _backoff(self) -> Backoff:
        return Backoff(self._settings.retry_backoff_initial_s, self._settings.retry_backoff_max_s)


def _ranges(records: Sequence[ConsumedRecord]) -> dict[str, tuple[int, int]]:
    """``{"logs[0]": (first offset, last offset)}``, for diagnostics."""
    ranges: dict[str, tuple[int, int]] = {}
    for r in records:
        name = f"{r.topic}[{r.partition}]"
        first, last = ranges.get(name, (r.offset, r.offset))
        ranges[name] = (min(first, r.offset), max(last, r.offset))
    return ranges


def _offsets_text(offsets: dict[TopicPartition, OffsetAndMetadata]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]={om.offset}" for tp, om in sorted(offsets.items()))


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text and text != "None" else type(error).__name__


def _retriable(error: BaseException | None) -> bool:
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))
