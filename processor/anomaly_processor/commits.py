"""Offset commits: a batch's offsets are committed only once its records were acknowledged and printed.

The commit is asynchronous: it is sent once the batch is acknowledged and completes while the next batch is
polled and scored. At most one commit is in flight (so a later one is never overtaken by an earlier one);
offsets not yet confirmed are sent again with the next one; on stop the remainder is committed synchronously.
A revoked partition's offsets are dropped at the revocation (its next owner starts from the last confirmed
commit; a late commit of ours could move it back).
"""

import logging
from collections.abc import Sequence

from kafka import TopicPartition
from kafka.errors import CommitFailedError, IllegalStateError, KafkaError
from kafka.structs import OffsetAndMetadata

from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ownership import PartitionOwnership
from anomaly_processor.records import ConsumedRecord
from anomaly_processor.retry import RetryContext, describe, retriable, retry_after
from eventbus import CommitFuture, ConsumerPort

log = logging.getLogger(__name__)

COMMIT_TIMEOUT_MS = 5000  # one commit attempt; failures are retried with backoff


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


class OffsetCommitter:
    """Offsets handled and not yet confirmed committed, per partition, and the one commit in flight.

    ``ownership.lock`` guards the offsets: a revocation drops a partition's (``forget``) atomically with it.
    """

    def __init__(
        self, consumer: ConsumerPort, ownership: PartitionOwnership, metrics: ProcessorMetrics, retries: RetryContext
    ) -> None:
        self._consumer = consumer
        self._ownership = ownership
        self._metrics = metrics
        self._printer = retries.printer
        self._stop = retries.stop
        self._hold = retries.hold
        self._backoff = retries.backoff
        self._bootstrap = retries.bootstrap
        # Offsets of records handled (acknowledged, printed) and not yet confirmed committed, per partition.
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        # Offsets handled but held back until the state they led to is saved (``queue(release=False)``).
        self._held: dict[TopicPartition, OffsetAndMetadata] = {}
        self._commit_in_flight: tuple[CommitFuture, dict[TopicPartition, OffsetAndMetadata]] | None = None

    def forget(self, tp: TopicPartition) -> None:
        """Drop a revoked partition's offsets; called by ``PartitionOwnership.revoke`` under its lock."""
        self._uncommitted.pop(tp, None)
        self._held.pop(tp, None)
        self._metrics.forget_partition(tp.topic, tp.partition)

    def queue(self, handled: Sequence[ConsumedRecord], epoch: int, *, release: bool = True) -> None:
        """Queue the offsets of ``handled`` (acknowledged and printed) for commit, and send a commit if none is out.

        ``release=False`` holds them back (the state they led to is not saved yet); a later ``release`` commits
        them with everything held before.
        """
        offsets = commit_offsets(handled)
        with self._ownership.lock:  # atomic with a revocation, which drops the revoked partitions' offsets
            for tp, om in offsets.items():
                if not self._ownership.revoked_after(tp, epoch):
                    _keep_latest(self._held, tp, om)
        if release:
            self.release()

    def release(self) -> None:
        """Let every offset held back be committed (their state is saved), and send a commit if none is out."""
        with self._ownership.lock:
            for tp, om in self._held.items():
                _keep_latest(self._uncommitted, tp, om)
            self._held.clear()
        if self._commit_in_flight is not None and not self._commit_in_flight[0].is_done:
            # The last batch's commit is still out: commit both now rather than let a third batch's worth of
            # handled records pile up unconfirmed, so a crash redoes at most the batch in hand and the one before.
            self._metrics.commits_waited.inc()
            self.commit_handled()
            return
        self.send()

    def send(self) -> None:
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

    def positions(self) -> dict[TopicPartition, int]:
        """Per partition, the offset after the last record handled and not yet confirmed committed (held or not)."""
        with self._ownership.lock:
            merged = dict(self._uncommitted)
            for tp, om in self._held.items():
                _keep_latest(merged, tp, om)
        return {tp: om.offset for tp, om in merged.items()}

    def _unconfirmed(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """A copy of the offsets handled and not yet confirmed committed."""
        with self._ownership.lock:
            return dict(self._uncommitted)

    def _settle(self, future: CommitFuture, sent: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if future.failed():
            # Kept in _uncommitted: the next commit carries them (a revoked partition's were dropped).
            log.warning("commit of %s failed (%s): sent again with the next one", _offsets_text(sent), future.exception)
            return
        self._confirm(sent)

    def _confirm(self, committed: dict[TopicPartition, OffsetAndMetadata]) -> None:
        with self._ownership.lock:
            for tp, om in committed.items():
                held = self._uncommitted.get(tp)
                if held is not None and held.offset <= om.offset:
                    del self._uncommitted[tp]
        log.debug("committed %s", _offsets_text(committed))
        self._observe_lag(committed)

    def commit_handled_once(self) -> None:
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
        committed = self._commit(offsets, self._ownership.current_epoch())
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
                    self._printer.notice(f"Kafka at {self._bootstrap} is back: offsets committed.")
                return True
            except CommitFailedError as exc:
                log.warning("commit refused, the group rebalanced (%s): these records may be handled again", exc)
                return False
            except KafkaError as exc:
                if not retriable(exc) or self._stop.is_set():
                    log.warning("commit of %s failed (%s): these records may be handled again", offsets, describe(exc))
                    return False
                reason = describe(exc)
                retry_after(
                    backoff,
                    self._hold,
                    self._printer,
                    log,
                    "commit failed (%s); retrying in %.1fs",
                    reason,
                    shown=f"Kafka unavailable at {self._bootstrap}, retrying the commit in {{delay}}s ({reason})",
                )
                lost = self._ownership.revoked_since(epoch)
                offsets = {tp: om for tp, om in offsets.items() if (tp.topic, tp.partition) not in lost}
        return False

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
                self._metrics.set_lag(tp.topic, tp.partition, highwater - committed.offset)


def _keep_latest(offsets: dict[TopicPartition, OffsetAndMetadata], tp: TopicPartition, om: OffsetAndMetadata) -> None:
    held = offsets.get(tp)
    if held is None or om.offset > held.offset:
        offsets[tp] = om


def _offsets_text(offsets: dict[TopicPartition, OffsetAndMetadata]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]={om.offset}" for tp, om in sorted(offsets.items()))
