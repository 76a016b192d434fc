"""The processor's Kafka clients on librdkafka (confluent-kafka), in the shape of ``eventbus._ports``.

What differs from kafka-python, and how the wrappers hide it:

- Rebalance callbacks, commit results and delivery reports run inside ``poll``/``consume``/``flush`` on the
  caller's thread (kafka-python: its IO thread). The assignment callback assigns first, then tells the
  listener, so the listener may pause what it was just given.
- librdkafka resends produced records itself; a record it gives up on fails its future with a retriable error.
- Offsets committed are the next offset to read, as in kafka-python; an asynchronous commit is settled by the
  ``on_commit`` report whose offsets it sent.
- Errors are raised as ``ConfluentKafkaError``, a kafka-python ``KafkaError`` (with ``retriable``), and a commit
  refused because the group rebalanced as ``CommitFailedError``, so the loop's retry rules hold for both.
"""

import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer
from confluent_kafka import KafkaError as LibError
from confluent_kafka import TopicPartition as LibPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata, TopicPartition

from eventbus._ports import RebalanceListener

log = logging.getLogger(__name__)
LIBRDKAFKA_LOGGER = "kafka.librdkafka"  # under "kafka": quieted with kafka-python's

# librdkafka errors that waiting can fix though librdkafka does not mark them retriable: brokers going away or
# moving (a killed leader's handle is destroyed under a pending request), metadata not known yet.
_TRANSIENT = {
    LibError._TRANSPORT,
    LibError._ALL_BROKERS_DOWN,
    LibError._DESTROY_BROKER,
    LibError._UNKNOWN_BROKER,
    LibError._RESOLVE,
    LibError._NODE_UPDATE,
    LibError._TIMED_OUT,
    LibError._TIMED_OUT_QUEUE,
    LibError._MSG_TIMED_OUT,
    LibError._ISR_INSUFF,
    LibError._WAIT_COORD,
    LibError._WAIT_CACHE,
    LibError._IN_PROGRESS,
    LibError._PREV_IN_PROGRESS,
    LibError._RETRY,
    LibError._OUTDATED,
    LibError._STATE,  # e.g. a seek before the partition's fetch started: done again on the retry
    LibError._UNKNOWN_PARTITION,
    LibError._UNKNOWN_TOPIC,
    LibError._MAX_POLL_EXCEEDED,  # left the group: the next poll joins it again
    LibError.REQUEST_TIMED_OUT,
    LibError.NOT_ENOUGH_REPLICAS,
    LibError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    LibError.LEADER_NOT_AVAILABLE,
    LibError.NOT_LEADER_FOR_PARTITION,
    LibError.COORDINATOR_NOT_AVAILABLE,
    LibError.NOT_COORDINATOR,
    LibError.COORDINATOR_LOAD_IN_PROGRESS,
}
# A commit the group no longer accepts from us: the partitions moved on.
_REBALANCED = {
    LibError.REBALANCE_IN_PROGRESS,
    LibError.ILLEGAL_GENERATION,
    LibError.UNKNOWN_MEMBER_ID,
    LibError._ASSIGNMENT_LOST,
}
OFFSETS_TIMEOUT_MS = 10_000  # an offset look-up without a timeout of its own: never wait for ever
# ``commit`` consumes in slices this long while it waits for the answer: ``consume`` returns only once its batch
# is full or the slice is over, even when the answer came at its start (50 ms slices: each synchronous commit cost 50).
COMMIT_WAIT_SLICE_S = 0.002
SEND_BLOCK_S = 60.0  # how long ``send`` waits for room in a full queue, as kafka-python's max_block_ms

# kafka-python option names (the vocabulary of ``eventbus.make_*``) -> librdkafka's; None: not a client option.
_OPTION_NAMES: dict[str, str | None] = {
    "group_id": "group.id",
    "client_id": "client.id",
    "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "retries": None,  # librdkafka retries until message.timeout.ms
    "max_poll_records": None,  # a ``poll`` argument here
    "partition_assignment_strategy": "partition.assignment.strategy",
}


def librdkafka_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python options as librdkafka configuration; an option without a counterpart is a bug: raise."""
    configs: dict[str, Any] = {}
    for name, value in options.items():
        if name not in _OPTION_NAMES:
            raise ValueError(f"no librdkafka counterpart for the kafka-python option {name!r}")
        target = _OPTION_NAMES[name]
        if target is None or value is None:
            continue
        if name == "partition_assignment_strategy":
            value = ",".join(_assignor_name(a) for a in value)
        elif name == "acks":
            value = str(value)
        configs[target] = value
    return configs


def _assignor_name(assignor: Any) -> str:
    name = str(getattr(assignor, "name", assignor))
    return {"roundrobin": "roundrobin", "range": "range", "cooperative-sticky": "cooperative-sticky"}.get(name, name)


class ConfluentKafkaError(KafkaError):
    """A librdkafka error as a kafka-python ``KafkaError``: ``retriable`` when waiting can fix it."""

    def __init__(self, error: LibError) -> None:
        super().__init__(f"{error.name()}: {error.str()}")
        self.code = error.code()
        self.retriable = bool(error.retriable() or error.code() in _TRANSIENT) and not error.fatal()

    def __str__(self) -> str:  # kafka-python's would prefix the class name, which ``describe`` adds too
        return str(self.args[0])


def _raise(exc: KafkaException) -> Any:
    error = exc.args[0] if exc.args and isinstance(exc.args[0], LibError) else None
    if error is None:
        raise KafkaError(str(exc)) from exc
    if error.code() in _REBALANCED:
        raise CommitFailedError(error.str()) from exc
    raise ConfluentKafkaError(error) from exc


class Record:
    """A consumed record, with kafka-python's field names; those the loop reads for few records (time, headers,
    leader epoch) are asked of the message when read."""

    __slots__ = ("topic", "partition", "offset", "key", "value", "_message")

    def __init__(self, message: Message) -> None:
        self.topic: str = message.topic()  # type: ignore[assignment]
        self.partition: int = message.partition()  # type: ignore[assignment]
        self.offset: int = message.offset()  # type: ignore[assignment]
        self.key: bytes | None = message.key()
        self.value: bytes | None = message.value()
        self._message = message

    @property
    def timestamp(self) -> int:
        return self._message.timestamp()[1]

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]:
        return self._message.headers() or ()  # type: ignore[return-value]

    @property
    def leader_epoch(self) -> int | None:
        return self._message.leader_epoch()

    def __repr__(self) -> str:
        return f"Record({self.topic}[{self.partition}]@{self.offset})"


class _CommitFuture:
    __slots__ = ("offsets", "is_done", "exception")

    def __init__(self, offsets: set[tuple[str, int, int]]) -> None:
        self.offsets = offsets
        self.is_done = False
        self.exception: BaseException | None = None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None


class _SendFuture:
    __slots__ = ("exception",)

    def __init__(self) -> None:
        self.exception: BaseException | None = None

    def succeeded(self) -> bool:
        return self.exception is None

    def settle(self, error: LibError | None, _message: Message) -> None:
        if error is not None:
            self.exception = ConfluentKafkaError(error)


def _lib(tp: TopicPartition, offset: int | None = None) -> LibPartition:
    return LibPartition(tp.topic, tp.partition) if offset is None else LibPartition(tp.topic, tp.partition, offset)


def _ours(partitions: Iterable[LibPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]


def _log_error(error: LibError) -> None:
    """librdkafka's own log (``kafka.librdkafka``) already tells of brokers going away; only a fatal error is news."""
    log.log(logging.ERROR if error.fatal() else logging.DEBUG, "librdkafka: %s", error.str())


class ConfluentConsumer:
    """A librdkafka consumer with the processor's consumer surface (``eventbus._ports.ConsumerPort``)."""

    def __init__(self, configs: dict[str, Any], max_records: int) -> None:
        configs = {
            **configs,
            "on_commit": self._committed,
            "error_cb": _log_error,
            "logger": logging.getLogger(LIBRDKAFKA_LOGGER),
        }
        self._subscribed = "group.id" in configs
        if not self._subscribed:
            configs["group.id"] = "unused"  # librdkafka insists; an assign-only consumer never joins it
        self._consumer = Consumer(configs)
        self._max_records = max_records
        self._listener: RebalanceListener | None = None
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._paused: set[TopicPartition] = set()
        self._started: dict[TopicPartition, int] = {}  # where an assign-only partition was placed
        self._commits: list[_CommitFuture] = []  # commits sent and not yet reported, oldest first
        self._stash: list[Message] = []  # records consumed while ``commit`` waited for its report

    # -- group membership --------------------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: RebalanceListener | None = None) -> None:
        self._listener = listener
        self._consumer.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_revoke)  # fmt: skip

    def _on_assign(self, consumer: Consumer, partitions: list[LibPartition]) -> None:
        consumer.assign(partitions)  # before the listener, which may pause them
        # librdkafka keeps a partition's pause across losing and regaining it (a session timed out while the
        # loop waited paused for Kafka): a partition newly ours starts unpaused, as with kafka-python.
        consumer.resume(partitions)
        self._assigned = frozenset(_ours(partitions))
        if self._listener is not None:
            self._listener.on_partitions_assigned(sorted(self._assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[LibPartition]) -> None:
        revoked = _ours(partitions)
        self._unstash(set(revoked))  # their next owner reads them from the committed offset
        if self._listener is not None:
            self._listener.on_partitions_revoked(revoked)
        consumer.unassign()
        self._assigned = frozenset()
        self._paused.clear()

    def _unstash(self, partitions: set[TopicPartition]) -> None:
        if self._stash:
            self._stash = [m for m in self._stash if (m.topic(), m.partition()) not in partitions]

    def assignment(self) -> Collection[TopicPartition]:
        return self._assigned

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read ``partitions`` outside any group (the state restore), from the start unless sought."""
        try:
            self._consumer.assign([_lib(tp) for tp in partitions])
        except KafkaException as exc:
            _raise(exc)
        self._assigned = frozenset(partitions)
        self._started = {}
        self._stash = []

    # -- consuming ---------------------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> Mapping[TopicPartition, Sequence[Any]]:
        """What has arrived, up to ``max_records``; if nothing has, wait up to ``timeout_ms`` for a first record
        (``consume`` alone would wait the whole timeout for a full batch: a low-rate stream's lines come late)."""
        limit = max_records or self._max_records
        if self._stash:  # consumed while a commit was awaited: handed out first, in order
            messages, self._stash = self._stash[:limit], self._stash[limit:]
            return self._grouped(messages)
        try:
            messages = self._consumer.consume(limit, 0)
            if not messages and timeout_ms > 0:
                first = self._consumer.poll(timeout_ms / 1000)
                if first is not None:
                    messages = [first, *self._consumer.consume(limit - 1, 0)] if limit > 1 else [first]
        except KafkaException as exc:
            _raise(exc)
        return self._grouped(messages)

    def _grouped(self, messages: list[Message]) -> dict[TopicPartition, list[Record]]:
        by_partition: dict[tuple[str, int], list[Record]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise ConfluentKafkaError(error)
                if error.code() != LibError._PARTITION_EOF:
                    log.warning("librdkafka: %s", error.str())
                continue
            record = Record(message)
            chunk = by_partition.get((record.topic, record.partition))
            if chunk is None:
                chunk = by_partition[(record.topic, record.partition)] = []
            chunk.append(record)
        return {TopicPartition(*tp): records for tp, records in by_partition.items()}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._unstash({partition})
        if not self._subscribed:
            self._place({partition: offset})
            return
        try:
            self._consumer.seek(_lib(partition, offset))
        except KafkaException as exc:
            _raise(exc)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        if not self._subscribed:  # placed at the first offset kept, so that ``position`` knows it before a read
            self._place({tp: self._watermarks(tp, OFFSETS_TIMEOUT_MS)[0] for tp in partitions})
            return
        for tp in partitions:
            self.seek(tp, OFFSET_BEGINNING)

    def _place(self, offsets: dict[TopicPartition, int]) -> None:
        """Assign-only: re-assign with these start offsets (librdkafka may not seek a partition before it fetches)."""
        self._started.update(offsets)
        try:
            self._consumer.assign([_lib(tp, self._started.get(tp)) for tp in sorted(self._assigned)])
        except KafkaException as exc:
            _raise(exc)

    def position(self, partition: TopicPartition, timeout_ms: int | None = None) -> int | None:
        try:
            (found,) = self._consumer.position([_lib(partition)])
        except KafkaException as exc:
            _raise(exc)
        if found.offset >= 0:
            return int(found.offset)
        return self._started.get(partition)

    def end_offsets(self, partitions: list[TopicPartition], timeout_ms: int | None = None) -> dict[Any, int]:
        return {tp: self._watermarks(tp, timeout_ms)[1] for tp in partitions}

    def _watermarks(self, tp: TopicPartition, timeout_ms: int | None) -> tuple[int, int]:
        timeout = (OFFSETS_TIMEOUT_MS if timeout_ms is None else timeout_ms) / 1000
        try:
            low, high = self._consumer.get_watermark_offsets(_lib(tp), timeout=timeout)
        except KafkaException as exc:
            _raise(exc)
        return int(low), int(high)

    def highwater(self, partition: TopicPartition) -> int | None:
        """The end of ``partition`` as of the last fetch (no request), None if not known."""
        try:
            _, high = self._consumer.get_watermark_offsets(_lib(partition), cached=True)
        except KafkaException:
            return None
        return int(high) if high >= 0 else None

    def pause(self, *partitions: TopicPartition) -> None:
        try:
            self._consumer.pause([_lib(tp) for tp in partitions])
        except KafkaException as exc:
            _raise(exc)
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        try:
            self._consumer.resume([_lib(tp) for tp in partitions])
        except KafkaException as exc:
            _raise(exc)
        self._paused.difference_update(partitions)

    def paused(self) -> Collection[TopicPartition]:
        return set(self._paused & self._assigned)

    # -- offsets -----------------------------------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int | None = None) -> None:
        """Commit and wait for the answer, at most ``timeout_ms`` (``KafkaTimeoutError``, retriable).

        librdkafka's own synchronous commit can wait for ever: while the group rebalances (after a broker came
        back, say) the commit waits for the join, and the join for a ``poll`` serving the rebalance. So this
        commits asynchronously and consumes while it waits, which serves both; records consumed meanwhile are
        kept and handed out by the next ``poll`` (those of partitions revoked meanwhile are dropped)."""
        future = self.commit_async(offsets)
        deadline = time.monotonic() + (timeout_ms or OFFSETS_TIMEOUT_MS) / 1000
        while not future.is_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaTimeoutError(f"no answer to a commit within {timeout_ms or OFFSETS_TIMEOUT_MS} ms")
            try:
                self._stash.extend(self._consumer.consume(self._max_records, min(remaining, COMMIT_WAIT_SLICE_S)))
            except KafkaException as exc:
                _raise(exc)
        if future.exception is not None:
            raise future.exception

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> _CommitFuture:
        future = _CommitFuture({(tp.topic, tp.partition, om.offset) for tp, om in offsets.items()})
        try:
            self._consumer.commit(offsets=_commit_list(offsets), asynchronous=True)
        except KafkaException as exc:
            future.is_done = True
            error = exc.args[0] if exc.args and isinstance(exc.args[0], LibError) else None
            if error is None or error.code() != LibError._NO_OFFSET:
                future.exception = ConfluentKafkaError(error) if error is not None else KafkaError(str(exc))
            return future
        self._commits.append(future)
        return future

    def _committed(self, error: LibError | None, partitions: list[LibPartition]) -> None:
        """librdkafka's report of a commit: every commit here is asynchronous and reported in the order sent,
        so this settles the oldest one out."""
        if not self._commits:
            return
        future = self._commits.pop(0)
        failed = error or next((p.error for p in partitions if p.error is not None), None)
        if failed is not None and failed.code() != LibError._NO_OFFSET:
            future.exception = (
                CommitFailedError(failed.str()) if failed.code() in _REBALANCED else ConfluentKafkaError(failed)
            )
        future.is_done = True

    def committed(self, partition: TopicPartition, timeout_ms: int | None = None) -> int | None:
        timeout = (OFFSETS_TIMEOUT_MS if timeout_ms is None else timeout_ms) / 1000
        try:
            (found,) = self._consumer.committed([_lib(partition)], timeout=timeout)
        except KafkaException as exc:
            _raise(exc)
        return int(found.offset) if found.offset >= 0 else None

    def close(self, autocommit: bool = True) -> None:
        """Leave the group (never commits: auto-commit is off)."""
        self._consumer.close()


def _commit_list(offsets: dict[TopicPartition, OffsetAndMetadata]) -> list[LibPartition]:
    return [_lib(tp, om.offset) for tp, om in offsets.items()]


class ConfluentProducer:
    """A librdkafka producer with the processor's producer surface (``eventbus._ports.ProducerPort``)."""

    def __init__(self, configs: dict[str, Any]) -> None:
        configs = {**configs, "error_cb": _log_error, "logger": logging.getLogger(LIBRDKAFKA_LOGGER)}
        # A record's future fails through its delivery report; one acknowledged needs none (``flush`` returning
        # means it was), and a report per record is a call into Python per record.
        configs.setdefault("delivery.report.only.error", True)
        self._producer = Producer(configs)

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> _SendFuture:
        future = _SendFuture()
        options: dict[str, Any] = {"on_delivery": future.settle}
        if partition is not None:
            options["partition"] = partition
        if headers:
            options["headers"] = headers
        if timestamp_ms is not None:
            options["timestamp"] = timestamp_ms
        deadline: float | None = None
        while True:
            try:
                self._producer.produce(topic, value, key, **options)
                return future
            except BufferError:  # the local queue is full: serve delivery reports until there is room
                deadline = deadline or time.monotonic() + SEND_BLOCK_S
                if time.monotonic() > deadline:
                    raise KafkaTimeoutError(f"no room in the producer's queue within {SEND_BLOCK_S:.0f}s") from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                _raise(exc)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every record's acknowledgement (or failure); ``KafkaTimeoutError`` if some are still out."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            raise KafkaTimeoutError(f"{left} records not acknowledged within {timeout}s")

    def partitions_for(self, topic: str) -> set[int] | None:
        try:
            metadata = self._producer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            _raise(exc)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            return None
        return set(described.partitions)

    def close(self, timeout: float | None = None) -> None:
        self._producer.flush(-1 if timeout is None else timeout)
