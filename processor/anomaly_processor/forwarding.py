"""The repartition topic's record: the events of one batch bound for one partition, packed as one Kafka record.

A keyless event whose service another member owns is forwarded to that member through ``REPARTITION_TOPIC``.
One Kafka record per event cost ~17 µs an event end to end (produce, headers, consume, the origin header parsed
again): so a batch's events bound for one partition travel together, each as its original bytes with where it
first sat (partition, offset, time), which gives an event without id the same id whichever way it travelled.

Format (version 1, little-endian)::

    0x00, version (u8), count (u32), len(topic) (u16), topic (UTF-8),
    partitions (i32 x count), offsets (i64 x count), timestamps in ms (i64 x count), lengths (u32 x count),
    the events' bytes one after the other

The first byte is not one a JSON value can start with: a record of the format before it (one event as JSON, its
origin in an ``origin`` header) still in the topic after an upgrade is told apart and read as before.
A record that does not follow the format is refused as a whole (``ForwardFormatError``), to be dead-lettered.
"""

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from eventbus import BadEventError, EventOrigin, StreamRecord

MAGIC = 0x00
VERSION = 1
# Below the broker's default message.max.bytes (1 MiB), whatever the events: a batch's share is split beyond it.
RECORD_MAX_BYTES = 512 * 1024
_HEAD = struct.Struct("<BBIH")
_PER_EVENT = 4 + 8 + 8 + 4  # a partition, an offset, a timestamp, a length


class ForwardFormatError(BadEventError):
    """A repartition record that is not a forwarded batch this processor can read."""


class ForwardedRecord:
    """One event of a forwarded batch, in the shape of a consumed record: its place is the batch record's (which
    the consumer commits, rewinds, loses to a rebalance), its ``origin`` where the event was first consumed."""

    __slots__ = ("topic", "partition", "offset", "value", "timestamp", "origin")
    key = None
    headers: Sequence[tuple[str, bytes | None]] = ()

    def __init__(self, batch: StreamRecord, value: bytes, timestamp: int, origin: EventOrigin) -> None:
        self.topic = batch.topic
        self.partition = batch.partition
        self.offset = batch.offset
        self.value = value
        self.timestamp = timestamp
        self.origin = origin

    def __repr__(self) -> str:
        return f"ForwardedRecord({self.topic}[{self.partition}]@{self.offset} from {self.origin.event_id})"


class Unpacked(NamedTuple):
    topic: str
    partitions: tuple[int, ...]
    offsets: tuple[int, ...]
    timestamps: tuple[int, ...]
    values: list[bytes]


def is_forwarded(value: bytes | None) -> bool:
    return bool(value) and value[0] == MAGIC  # type: ignore[index]


def forwarded_count(value: bytes) -> int:
    """How many events a forwarded batch holds (read from its head alone); 1 if it is not one."""
    if len(value) < _HEAD.size or value[0] != MAGIC:
        return 1
    return max(1, _HEAD.unpack_from(value)[2])


def pack(records: Sequence[StreamRecord]) -> Iterator[bytes]:
    """The consumed ``records`` (valid events of one topic, bound for one partition) as forwarded batches of at
    most ``RECORD_MAX_BYTES`` each (one event alone may not exceed it: events are at most 64 KiB)."""
    start = 0
    while start < len(records):
        size = _HEAD.size + len(records[start].topic.encode())
        stop = start
        while stop < len(records):
            grown = size + _PER_EVENT + len(records[stop].value or b"")
            if grown > RECORD_MAX_BYTES and stop > start:
                break
            size = grown
            stop += 1
        yield _pack(records[start:stop])
        start = stop


def _pack(records: Sequence[StreamRecord]) -> bytes:
    topic = records[0].topic.encode()
    values = [r.value or b"" for r in records]
    n = len(records)
    columns = struct.pack(
        f"<{n}i{n}q{n}q{n}I",
        *[r.partition for r in records],
        *[r.offset for r in records],
        *[r.timestamp for r in records],
        *map(len, values),
    )
    return b"".join((_HEAD.pack(MAGIC, VERSION, n, len(topic)), topic, columns, *values))


def unpack(value: bytes) -> Unpacked:
    """The events of a forwarded batch and where each first sat; ``ForwardFormatError`` saying what is wrong."""
    if len(value) < _HEAD.size or value[0] != MAGIC:
        raise ForwardFormatError("not a forwarded batch (too short, or not its first byte)")
    _, version, n, topic_size = _HEAD.unpack_from(value)
    if version != VERSION:
        raise ForwardFormatError(f"forwarded batch of version {version}: this processor reads version {VERSION}")
    position = _HEAD.size + topic_size
    payload = position + n * _PER_EVENT
    if n == 0:
        raise ForwardFormatError("forwarded batch of no events")
    if payload > len(value):
        raise ForwardFormatError(f"forwarded batch of {len(value)} bytes is too short for {n} events")
    try:
        topic = value[_HEAD.size : position].decode("utf-8")
    except UnicodeDecodeError:
        raise ForwardFormatError("forwarded batch: its topic is not UTF-8") from None
    columns = struct.unpack_from(f"<{n}i{n}q{n}q{n}I", value, position)
    lengths = columns[3 * n :]
    if payload + sum(lengths) != len(value):
        raise ForwardFormatError(
            f"forwarded batch of {len(value)} bytes: its events' lengths add up to {sum(lengths)} after the "
            f"{payload}-byte head"
        )
    values = []
    for length in lengths:
        values.append(value[payload : payload + length])
        payload += length
    return Unpacked(topic, columns[:n], columns[n : 2 * n], columns[2 * n : 3 * n], values)
