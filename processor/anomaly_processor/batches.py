"""Consuming: fill a micro-batch, hand back records of partitions lost meanwhile, wait while staying in the group.

A batch waits for a first record, then up to ``BATCH_WAIT_MS`` to fill. Records polled before a rebalance that
took their partition away are sought back to (when the partition came back) rather than risk a gap. While the
loop waits to retry, every partition is paused and the consumer keeps polling, so it stays in its group
without consuming more.
"""

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence

from kafka import TopicPartition
from kafka.errors import KafkaError

from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.output import Printer
from anomaly_processor.ownership import PartitionOwnership
from anomaly_processor.records import ConsumedRecord, DecodedBatch
from eventbus import ConsumerPort

log = logging.getLogger(__name__)

IDLE_POLL_MS = 500  # how long one poll waits for a first record; bounds how late a stop request is noticed
HOLD_POLL_MS = 500  # polls while waiting to retry, to stay in the group


class BatchConsumer:
    """The loop's side of the consumer: micro-batches in, records handed back, waiting while paused."""

    def __init__(
        self,
        consumer: ConsumerPort,
        ownership: PartitionOwnership,
        *,
        batch_max: int,
        batch_wait_ms: int,
        printer: Printer,
        metrics: ProcessorMetrics,
        stop: threading.Event,
        weight: Callable[[ConsumedRecord], int] | None = None,
    ) -> None:
        self._consumer = consumer
        self._ownership = ownership
        self._batch_max = batch_max
        self._batch_wait_ms = batch_wait_ms
        self._printer = printer
        self._metrics = metrics
        self._stop = stop
        self._weight = weight
        # Records polled past a full batch, kept for the next one (with the epoch they were polled at).
        self._carried: tuple[int, list[ConsumedRecord]] | None = None

    def poll_batch(self) -> tuple[list[ConsumedRecord], int]:
        """Up to ``BATCH_MAX`` events: wait for a first one, then up to ``BATCH_WAIT_MS`` to fill the batch.

        A record may hold many events (``weight``: a forwarded batch): records polled past a full batch are kept
        for the next one, up to a batch's worth, and sought back to beyond that."""
        chunks: list[tuple[int, list[ConsumedRecord]]] = []
        count = 0
        deadline: float | None = None
        wait_ms = IDLE_POLL_MS
        if self._carried is not None:
            chunks.append(self._carried)
            count = sum(self._weigh(self._carried[1]))
            self._carried = None
            wait_ms = 0
        while count < self._batch_max and not self._stop.is_set():
            polled = self._consumer.poll(timeout_ms=wait_ms, max_records=self._batch_max - count)
            records = [record for batch in polled.values() for record in batch]
            if records:
                polled_at = self._ownership.current_epoch()
                records, events, full = self._fit(polled_at, records, self._batch_max - count)
                chunks.append((polled_at, records))
                count += events
                if full:  # records were kept or sought back: a later poll would overtake them
                    break
                if deadline is None:
                    deadline = time.monotonic() + self._batch_wait_ms / 1000
            if deadline is None:
                break
            wait_ms = int((deadline - time.monotonic()) * 1000)
            if wait_ms <= 0:
                break
        epoch = self._ownership.current_epoch()
        records = [record for _, chunk in chunks for record in chunk]
        stale: set[tuple[str, int]] = set()
        for polled_at, chunk in chunks:
            revoked = self._ownership.revoked_since(polled_at)
            stale.update((r.topic, r.partition) for r in chunk if (r.topic, r.partition) in revoked)
        if stale:
            # Polled before a rebalance: hand these partitions' records back rather than risk a gap.
            dropped = [r for r in records if (r.topic, r.partition) in stale]
            records = [r for r in records if (r.topic, r.partition) not in stale]
            log.info("rebalanced while filling the batch: %d records of %s will be polled again", len(dropped), stale)
            self.rewind(dropped)
        if records and log.isEnabledFor(logging.DEBUG):
            log.debug("batch of %d records: %s", len(records), _ranges(records))
        return records, epoch

    def _weigh(self, records: Sequence[ConsumedRecord]) -> list[int]:
        weight = self._weight
        return [1] * len(records) if weight is None else [weight(r) for r in records]

    def _fit(self, polled_at: int, records: list[ConsumedRecord], room: int) -> tuple[list[ConsumedRecord], int, bool]:
        """The first of ``records`` that fit in ``room`` events (at least one), the events they hold, and whether
        any did not fit: the next batch's worth is carried, the rest sought back to. Each partition's records are
        in order, so each part is a run of each partition."""
        if self._weight is None:  # one event a record: the poll asked for no more than ``room``
            return records, len(records), False
        weights = self._weigh(records)
        total = sum(weights)
        if total <= room:
            return records, total, False
        taken = used = 0
        while taken < len(records) and (taken == 0 or used + weights[taken] <= room):
            used += weights[taken]
            taken += 1
        events = used
        carried, used = taken, 0
        while carried < len(records) and (carried == taken or used + weights[carried] <= self._batch_max):
            used += weights[carried]
            carried += 1
        if carried < len(records):
            self.rewind(records[carried:])
        if carried > taken:
            self._carried = (polled_at, records[taken:carried])
        return records[:taken], events, True

    def forget_carried(self, partitions: Collection[tuple[str, int]] | None = None) -> None:
        """Drop the carried records (of ``partitions``): they were sought back to, so they come again."""
        if self._carried is None:
            return
        polled_at, records = self._carried
        kept = [r for r in records if partitions is not None and (r.topic, r.partition) not in partitions]
        self._carried = (polled_at, kept) if kept else None

    def rewind(self, records: Sequence[ConsumedRecord]) -> None:
        """Seek back to the first of ``records`` in each partition still assigned, so they are polled again.

        kafka-python keeps the fetch position of a partition that is revoked and assigned back in one
        rebalance, so records dropped from a batch must be sought back to, or they would be skipped.
        Partitions no longer ours need nothing: their next owner starts at the committed offset.
        """
        first: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        self.forget_carried({(tp.topic, tp.partition) for tp in first})  # later records of those: polled again
        assigned = self._consumer.assignment()
        for tp, offset in first.items():
            if tp not in assigned:
                continue
            try:
                self._consumer.seek(tp, offset)
            except (KafkaError, AssertionError, ValueError) as exc:  # revoked meanwhile: its next owner redoes it
                log.warning("could not seek %s back to %d (%s)", tp, offset, exc)

    def drop_lost(self, decoded: DecodedBatch, epoch: int) -> DecodedBatch:
        """Without the records of partitions revoked while we waited; they are polled again by their owner."""
        lost = self._ownership.revoked_since(epoch)
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
        for record, key in decoded.forward:
            if (record.topic, record.partition) in lost:
                dropped.append(record)
            else:
                kept.forward.append((record, key))
        if dropped:
            log.info("partitions %s were revoked while waiting: %d records will be polled again", lost, len(dropped))
            self.rewind(dropped)
        return kept

    def hold(self, seconds: float) -> None:
        """Wait ``seconds`` (less if stopped) with all partitions paused, polling to keep group membership."""
        deadline = time.monotonic() + seconds
        self._ownership.holding = True
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
                self._printer.tick()
                self._metrics.beat()
                if remaining_ms <= HOLD_POLL_MS or self._stop.is_set():
                    return
        finally:
            self._ownership.holding = False

    def resume_paused(self) -> None:
        """Resume whatever a wait left paused."""
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)


def _ranges(records: Sequence[ConsumedRecord]) -> dict[str, tuple[int, int]]:
    """``{"logs[0]": (first offset, last offset)}``, for diagnostics."""
    ranges: dict[str, tuple[int, int]] = {}
    for r in records:
        name = f"{r.topic}[{r.partition}]"
        first, last = ranges.get(name, (r.offset, r.offset))
        ranges[name] = (min(first, r.offset), max(last, r.offset))
    return ranges
