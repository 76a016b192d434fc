"""Which partitions this consumer owns, as of which rebalance: the epoch every batch is stamped with.

kafka-python runs the rebalance listener on its IO thread while the loop polls, scores and produces on the
main thread. The listener only records what happened (``revoke``, ``assign``); the loop asks afterwards
whether a partition was revoked since the epoch it polled a record at (``revoked_since``, ``still_owned``)
and drops such records rather than produce or commit for a partition that is no longer its own.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition

from anomaly_processor.records import ConsumedRecord
from eventbus import ConsumerPort

log = logging.getLogger(__name__)


class PartitionOwnership:
    """The epoch (revocations counted) and, per partition, the epoch of its last revocation.

    ``lock`` also guards state that must change atomically with a revocation (the committer's offsets):
    ``revoke`` calls ``on_revoke(tp)`` for each partition while holding it.
    """

    def __init__(self, consumer: ConsumerPort, on_revoke: Callable[[TopicPartition], None]) -> None:
        self._consumer = consumer
        self._on_revoke = on_revoke
        self.lock = threading.Lock()
        self._epoch = 0  # counts revocations
        self._revoked_at: dict[TopicPartition, int] = {}  # partition -> epoch of its last revocation
        self.holding = False  # the loop is waiting with every partition paused: pause new ones too
        self.watchers: list[Any] = []  # told of each revocation and assignment (``revoked``/``assigned``)

    # -- the listener's side (kafka-python's IO thread) ----------------------------------------------------

    def revoke(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = list(revoked)
        with self.lock:
            self._epoch += 1
            for tp in revoked:
                key = TopicPartition(tp.topic, tp.partition)
                self._revoked_at[key] = self._epoch
                self._on_revoke(key)
        for watcher in self.watchers:
            watcher.revoked(revoked)
        if revoked:
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked))

    def assign(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        for watcher in self.watchers:
            watcher.assigned(assigned)
        if assigned:
            log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
            if self.holding:
                self._consumer.pause(*assigned)

    # -- the loop's side -----------------------------------------------------------------------------------

    def current_epoch(self) -> int:
        with self.lock:
            return self._epoch

    def revoked_since(self, epoch: int) -> set[tuple[str, int]]:
        with self.lock:
            return {(tp.topic, tp.partition) for tp, at in self._revoked_at.items() if at > epoch}

    def still_owned(self, records: list[ConsumedRecord], epoch: int) -> list[ConsumedRecord]:
        """``records`` of the partitions not revoked since ``epoch``: all of them but after a rebalance (one
        look-up per batch, not per record)."""
        lost = self.revoked_since(epoch)
        return [r for r in records if (r.topic, r.partition) not in lost] if lost else records

    def revoked_after(self, tp: TopicPartition, epoch: int) -> bool:
        """Whether ``tp`` was revoked after ``epoch``; the caller holds ``lock``."""
        return self._revoked_at.get(tp, -1) > epoch


class OwnershipListener(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread: it only records what happened, the loop acts on it."""

    def __init__(self, ownership: PartitionOwnership) -> None:
        self._ownership = ownership

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._ownership.revoke(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._ownership.assign(list(assigned))
