"""Each service's detector state in a compacted changelog topic, in step with the offset commits.

The contract (as Kafka Streams' at-least-once state stores): before the offsets of handled batches are
committed, the state of every service those batches touched is produced to ``STATE_TOPIC`` (keyed by service)
and acknowledged, so the last state stored for a service is its state after the last committed event. A
processor that is assigned a partition reads that partition of the changelog to its end before it scores
an event of it; events redelivered after a crash then advance the state exactly as they did the first time.

A service's partition has the same number in ``LOGS_TOPIC``, ``REPARTITION_TOPIC`` and ``STATE_TOPIC`` (same
partition count, murmur2 of the service, range assignment), so whoever owns a service's partition of the
repartition topic owns its state. Saving a service costs up to ~195 KiB, so offsets are committed (and state
saved) at most every ``STATE_COMMIT_INTERVAL_MS``, each touched service once per commit.

Memory: ``ContextualScorer`` keeps at most ``STATE_MAX_SERVICES`` services; the others are in ``LocalStateStore``,
a SQLite file that is only a cache of the changelog (filled on assignment, emptied on revocation).

Each save also writes, to every changelog partition it owns, a marker (key ``MARKER_KEY``): the offsets of that
partition number in ``LOGS_TOPIC`` and ``REPARTITION_TOPIC`` the saved state has learned up to. A restore seeks
the consumer there (or to the committed offset, if later): so the state and the position agree even when the
commit after a save was lost (a crash, a rebalance) or kafka-python kept the position of a partition that was
revoked and assigned back. Verdicts up to the marker were acknowledged before it was written: nothing is lost.

Known limit: a processor killed in the middle of a save (between the states and the markers of different
partitions) can leave one partition's services a few events ahead; those events are learned twice.
"""

import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from anomaly_processor.delivery import Delivery, Outgoing
from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ownership import PartitionOwnership
from eventbus import ConsumerPort, KafkaSettings
from streaming_detector.scorer import ContextualScorer

log = logging.getLogger(__name__)

RESTORE_POLL_MS = 500
RESTORE_REPORT_S = 10.0  # a restore still reading after this says so, and asks again where each partition ends
# kafka-python's offset look-ups wait forever by default; a broker going away mid-restore must not hang the loop.
OFFSETS_TIMEOUT_MS = 10_000
MARKER_KEY = b"\x00offsets"  # not a service name: services are printable text


class LocalStateStore:
    """Services' state as bytes in a SQLite file, by changelog partition: the services not in memory."""

    def __init__(self, partition_of: Callable[[str], int], directory: str | None = None) -> None:
        self._partition_of = partition_of
        self._dir = tempfile.TemporaryDirectory(prefix="processor-state-", dir=directory)
        # A cache rebuilt from the changelog on every assignment: no journal, no fsync.
        self._db = sqlite3.connect(os.path.join(self._dir.name, "state.sqlite"), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE state (service TEXT PRIMARY KEY, partition INTEGER, data BLOB)")
        self._db.execute("CREATE INDEX by_partition ON state (partition)")

    def get(self, service: str) -> bytes | None:
        row = self._db.execute("SELECT data FROM state WHERE service = ?", (service,)).fetchone()
        return bytes(row[0]) if row else None

    def put(self, service: str, data: bytes) -> None:
        self.put_many([(service, data)])

    def put_many(self, rows: Iterable[tuple[str, bytes | None]]) -> None:
        """Store each ``(service, state)``; a None state (a tombstone) deletes the service's."""
        self._db.execute("BEGIN")
        for service, data in rows:
            if data is None:
                self._db.execute("DELETE FROM state WHERE service = ?", (service,))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO state VALUES (?, ?, ?)", (service, self._partition_of(service), data)
                )
        self._db.execute("COMMIT")

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        self._db.executemany("DELETE FROM state WHERE partition = ?", [(p,) for p in partitions])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM state").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()


class ChangelogState:
    """Saves the touched services' state before offsets are committed; restores assigned partitions' state.

    The rebalance listener only records what was assigned and revoked (``assigned``, ``revoked``); the loop
    acts on it with ``catch_up`` before it scores the next batch, and calls ``save`` before it releases offsets.
    """

    def __init__(
        self,
        scorer: ContextualScorer,
        store: LocalStateStore,
        delivery: Delivery,
        restorer: ConsumerPort,
        ownership: PartitionOwnership,
        consumer: ConsumerPort,
        positions: Callable[[], dict[TopicPartition, int]],
        *,
        kafka: KafkaSettings,
        interval_ms: int,
        metrics: ProcessorMetrics,
    ) -> None:
        self._scorer = scorer
        self._store = store
        self._delivery = delivery
        self._restorer = restorer
        self._ownership = ownership
        self._consumer = consumer
        self._positions = positions
        self._topic = kafka.state_topic
        self._by_service = kafka.repartition_topic
        self._sources = (kafka.logs_topic, kafka.repartition_topic)
        self._interval_s = interval_ms / 1000
        self._metrics = metrics
        self._lock = threading.Lock()
        self._to_restore: set[int] = set()
        self._to_drop: set[int] = set()
        self.owned: set[int] = set()
        self._saved_at = time.monotonic()

    def partition_of(self, service: str) -> int:
        partition = self._delivery.partition_of(self._by_service, service.encode())
        assert partition is not None
        return partition

    # -- the listener's side --------------------------------------------------------------------------------

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._to_drop.update(tp.partition for tp in partitions if tp.topic == self._by_service)

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._to_restore.update(tp.partition for tp in partitions if tp.topic == self._by_service)

    # -- the loop's side ------------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        with self._lock:
            return bool(self._to_restore or self._to_drop)

    def catch_up(self, stop: threading.Event) -> set[int]:
        """Forget the services of partitions revoked, restore those of partitions assigned (read their changelog
        partitions to the end). A partition revoked and assigned back in one rebalance is restored as well:
        what was learned of it since the last commit is redone from the committed offsets."""
        with self._lock:
            drop, restore = self._to_drop | self._to_restore, set(self._to_restore)
            self._to_drop.clear()
            self._to_restore.clear()
        if not drop:
            return set()
        self.owned = (self.owned - drop) | restore
        forgotten = self._scorer.forget(lambda service: self.partition_of(service) in drop)
        self._store.drop_partitions(drop)
        if forgotten:
            log.info("state of %d services dropped from memory (partitions %s changed hands)", forgotten, sorted(drop))
        if restore:
            try:
                markers = self._restore(sorted(restore), stop)
                self._seek(restore, markers)
            except BaseException:  # e.g. Kafka away: the loop retries, and this restore is done again first
                self.assigned(TopicPartition(self._by_service, p) for p in restore)
                raise
            if stop.is_set():
                self.assigned(TopicPartition(self._by_service, p) for p in restore)  # not finished
        return restore

    def _seek(self, partitions: set[int], markers: dict[int, dict[str, int]]) -> None:
        """Position each restored partition of the source topics where its saved state left off."""
        assigned = self._consumer.assignment()
        for p in partitions:
            for topic in self._sources:
                tp = TopicPartition(topic, p)
                if tp not in assigned:
                    continue
                committed = self._consumer.committed(tp, timeout_ms=OFFSETS_TIMEOUT_MS)
                saved = markers.get(p, {}).get(topic)
                target = max(saved or 0, committed or 0) if saved is not None or committed is not None else None
                if target is None:
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, target)
                log.debug("%s[%d]: state saved up to %s, committed %s", topic, p, saved, committed)

    def _restore(self, partitions: list[int], stop: threading.Event) -> dict[int, dict[str, int]]:
        started = time.perf_counter()
        tps = [TopicPartition(self._topic, p) for p in partitions]
        self._metrics.set_restoring(len(tps))
        log.info("restoring the state of partitions %s from %s", partitions, self._topic)
        try:
            self._restorer.assign(tps)
            self._restorer.seek_to_beginning(*tps)
            end = self._restorer.end_offsets(tps, timeout_ms=OFFSETS_TIMEOUT_MS)
            left = {tp for tp in tps if self._position(tp) < end[tp]}
            states_read = 0
            services: set[str] = set()  # a service saved many times is one service restored
            markers: dict[int, dict[str, int]] = {}
            reported = time.monotonic()
            while left and not stop.is_set():
                polled = self._restorer.poll(timeout_ms=RESTORE_POLL_MS)
                for tp, records in polled.items():
                    rows = []
                    for r in records:
                        if r.key == MARKER_KEY:
                            markers[tp.partition] = json.loads(r.value)
                        elif r.key is not None:
                            rows.append((r.key.decode(), r.value))
                    self._store.put_many(rows)
                    states_read += len(rows)
                    services.update(service for service, _ in rows)
                if time.monotonic() - reported >= RESTORE_REPORT_S:
                    reported = time.monotonic()
                    self._recheck_end(end, left)
                for tp in list(left):
                    if self._position(tp) >= end[tp]:
                        left.discard(tp)
                        self._metrics.set_restoring(len(left))
                self._metrics.beat()
        finally:
            self._restorer.assign([])
            self._metrics.set_restoring(0)
        elapsed = time.perf_counter() - started
        self._metrics.services_restored.inc(len(services))
        self._metrics.restore_seconds.set(elapsed)
        log.info(
            "restored partitions %s: %d state records of %d services (%d services stored here) in %.2fs",
            partitions,
            states_read,
            len(services),
            len(self._store),
            elapsed,
        )
        return markers

    def _recheck_end(self, end: dict[TopicPartition, int], left: set[TopicPartition]) -> None:
        """Say that a restore is slow, and lower the ends still to reach to where the partitions end now: a broker
        restarted meanwhile may hold less than it announced (a high watermark read back from its checkpoint)."""
        now = self._restorer.end_offsets(sorted(left), timeout_ms=OFFSETS_TIMEOUT_MS)
        log.warning(
            "restoring %s: still reading after %.0fs (at %s of %s; the changelog ends at %s now)",
            self._topic,
            RESTORE_REPORT_S,
            {tp.partition: self._position(tp) for tp in left},
            {tp.partition: end[tp] for tp in left},
            {tp.partition: now[tp] for tp in left},
        )
        for tp in left:
            end[tp] = min(end[tp], now[tp])

    def _position(self, tp: TopicPartition) -> int:
        position = self._restorer.position(tp, timeout_ms=OFFSETS_TIMEOUT_MS)
        if position is None:
            raise KafkaTimeoutError(f"no position for {tp.topic}[{tp.partition}] within {OFFSETS_TIMEOUT_MS} ms")
        return int(position)

    def due(self) -> bool:
        return time.monotonic() - self._saved_at >= self._interval_s

    def save(self, epoch: int) -> bool:
        """Produce the state of every service touched since the last save (of partitions still ours) and wait
        for its acknowledgement; False if stopped first (the offsets stay held, the batch is redone)."""
        lost = {p for topic, p in self._ownership.revoked_since(epoch) if topic == self._by_service}
        outgoing: list[Outgoing] = []
        size = 0
        for service in self._scorer.take_dirty():
            if self.partition_of(service) in lost:
                continue
            data = self._scorer.export(service)
            if data is not None:
                outgoing.append(Outgoing(self._topic, service.encode(), data))
                size += len(data)
        positions = self._positions()
        for p in sorted(self.owned - lost):  # after the states: a marker acknowledged means they are too
            marker = {
                tp.topic: offset for tp, offset in positions.items() if tp.partition == p and tp.topic in self._sources
            }
            if marker:
                outgoing.append(Outgoing(self._topic, MARKER_KEY, json.dumps(marker).encode(), partition=p))
        if outgoing and not self._delivery.deliver(outgoing):
            return False
        self._saved_at = time.monotonic()
        self._metrics.states_saved.inc(len(outgoing))
        self._metrics.state_bytes_saved.inc(size)
        self._metrics.services_in_memory.set(self._scorer.services_in_memory())
        return True

    def check_partitions(self, partitions_for: Callable[[str], Any]) -> None:
        """The changelog must have as many partitions as the repartition topic, or states land where no
        restore reads them: a configuration to fix, not to work around."""
        ours, theirs = partitions_for(self._topic), partitions_for(self._by_service)
        if ours is not None and theirs is not None and len(ours) != len(theirs):
            raise RuntimeError(
                f"{self._topic} has {len(ours)} partitions and {self._by_service} {len(theirs)}: "
                f"recreate {self._topic} with {len(theirs)} partitions"
            )

    def close(self) -> None:
        self._restorer.close(autocommit=False)
        self._store.close()
