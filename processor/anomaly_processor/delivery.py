"""Delivery of a batch's records (verdicts, dead letters, re-keyed events): produce, wait for every
acknowledgement, resend what failed while Kafka is unavailable, give up only when asked to stop."""

import logging
from typing import Any, NamedTuple

from kafka.errors import KafkaTimeoutError
from kafka.partitioner.default import murmur2

from anomaly_processor.retry import RetryContext, describe, retriable, retry_after
from eventbus import ProducerPort

log = logging.getLogger(__name__)

FLUSH_SLICE_S = 1.0  # producer.flush waits in slices so the consumer can keep polling in between
STOP_GRACE_S = 10.0  # on stop, how long to still wait for Kafka to acknowledge the batch in hand
KEY_CACHE_MAX = 50_000  # keys whose partition is remembered


class KeyPartitioner:
    """kafka-python's default partitioning of keyed records (murmur2 of the key), computed once per key.

    Hashing every record's key in pure Python costs more than the rest of ``send``'s routing; a batch
    has few distinct keys (services). Records without a key are left to the producer.
    """

    def __init__(self, producer: ProducerPort) -> None:
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
                known = self._producer.partitions_for(topic)
                if not known:  # no metadata yet: the producer's partitioner (murmur2 too) decides
                    return None
                partitions = self._partitions[topic] = sorted(known)
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            if len(self._cache) >= KEY_CACHE_MAX:  # a flood of service names must not grow it without end
                self._cache.clear()
            self._cache[(topic, key)] = partition
        return partition


class Outgoing(NamedTuple):
    """A record to produce: a verdict, a dead letter, or an event re-keyed by service (a tuple: one is built
    per verdict, and a frozen dataclass costs several times as much to build)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    timestamp_ms: int | None = None
    partition: int | None = None  # None: the key's partition


class Delivery:
    """Produces records and waits for Kafka's acknowledgement of each; ``hold(seconds)`` waits while staying
    in the consumer group (the loop's consumer keeps polling with its partitions paused)."""

    def __init__(self, producer: ProducerPort, retries: RetryContext) -> None:
        self._producer = producer
        self._printer = retries.printer
        self._stop = retries.stop
        self._hold = retries.hold
        self._backoff = retries.backoff
        self._bootstrap = retries.bootstrap
        self.partition_of = KeyPartitioner(producer)

    def deliver(self, outgoing: list[Outgoing]) -> bool:
        """Produce every record and wait for its acknowledgement, resending failures; False if stopped first."""
        backoff = self._backoff()
        pending = outgoing
        while pending:
            sent: list[tuple[Outgoing, Any]] = []
            failed: list[Outgoing] = []
            reason = ""
            for position, item in enumerate(pending):
                try:
                    partition = item.partition
                    if partition is None:
                        partition = self.partition_of(item.topic, item.key)
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
                    reason = describe(exc)
                    break
            if not self._wait_for_acks(len(sent)):
                log.warning("stopping while Kafka is unavailable: %d records not acknowledged", len(sent))
                return False
            for item, future in sent:
                if future.succeeded():
                    continue
                error = future.exception
                if error is not None and not retriable(error):
                    raise error  # e.g. authorization or a record too large: a bug or config to fix, not to retry
                reason = reason or (describe(error) if error is not None else "not acknowledged")
                failed.append(item)
            if not failed:
                if backoff.attempts:
                    self._printer.notice(f"Kafka at {self._bootstrap} is back.")
                return True
            if self._stop.is_set():
                log.warning("stopping while Kafka is unavailable: %d records not acknowledged", len(failed))
                return False
            retry_after(
                backoff,
                self._hold,
                self._printer,
                log,
                "%d of %d records were not acknowledged (%s); resending in %.1fs",
                len(failed),
                len(pending),
                reason,
                shown=f"Kafka unavailable at {self._bootstrap}, "
                f"resending {len(failed)} records in {{delay}}s ({reason})",
            )
            pending = failed
        return True

    def _wait_for_acks(self, count: int) -> bool:
        """Wait until every record sent is acknowledged or failed; False if asked to stop while Kafka is silent."""
        waited = 0.0
        while True:
            try:
                self._producer.flush(timeout=FLUSH_SLICE_S)
                if waited:
                    self._printer.notice(f"Kafka acknowledged the {count} records after {waited:.0f}s.")
                return True
            except KafkaTimeoutError:
                waited += FLUSH_SLICE_S
            if self._stop.is_set() and waited >= STOP_GRACE_S:
                return False
            if waited == FLUSH_SLICE_S:
                self._printer.notice(
                    f"Kafka at {self._bootstrap} is slow or unavailable: "
                    f"waiting for it to acknowledge {count} records..."
                )
            elif int(waited) % 10 == 0:
                log.warning("still waiting for Kafka to acknowledge %d records (%.0fs)", count, waited)
            self._hold(0)
