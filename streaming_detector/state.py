"""One service's detector state as bytes, and back: what the processor keeps in its changelog topic.

A snapshot is a fixed header then the service's arrays, little-endian float64, bit for bit as in memory, so a
restored service scores the next events exactly as it would have (the sorted history is rebuilt by sorting).
The header carries a fingerprint of the ``ContextConfig`` (and of this format): a snapshot written under
another configuration raises ``StateMismatchError`` and the caller lets the service warm up again, rather
than misread arrays of another shape or meaning.

Size: about 200 bytes, plus 40 bytes per event of the service's history (5 signals × 8 bytes), plus ~1.3 KiB
per day of hourly maxima held (24 hours × 7 values × 8 bytes; at most 29 days): at most ~195 KiB for a service
with a full history (4,000 events, 4 weeks of days) and a few KiB for one seen a few times.
"""

import functools
import hashlib
import json
import struct
from dataclasses import asdict
from typing import Protocol

import numpy as np

from streaming_detector.tracker import HISTORIES, N_SIGNALS, NUMBERS, ContextConfig, ServiceArrays

# 2: the days of hourly maxima and levels (time-aware history); 3: no gate cool-down (incidents replaced it);
# 4: the gate's count and share of high context scores (a quiet service); 5: the hour-baseline signal's history
# holds the distance of a three-event mean level (was one event's); 6: the run (its history, its last surprisals)
FORMAT_VERSION = 6
MAGIC = b"SDST"
# magic, format, configuration fingerprint, events seen, history values learned, days held
_HEADER = struct.Struct("<4sH16sqqq")


class StateMismatchError(ValueError):
    """A snapshot this process cannot use: another configuration or format, or not a snapshot at all."""


@functools.cache
def fingerprint(config: ContextConfig) -> bytes:
    """16 bytes that change with any field of ``config`` and with the snapshot format."""
    layout = {"format": FORMAT_VERSION, "numbers": NUMBERS, "signals": N_SIGNALS, "histories": HISTORIES}
    text = json.dumps({**layout, "config": asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).digest()[:16]


def encode_state(config: ContextConfig, arrays: ServiceArrays) -> bytes:
    """A service's tracker state as bytes."""
    days = len(arrays.days)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, fingerprint(config), arrays.count, arrays.learned, days)
    parts = [arrays.numbers, arrays.recent, arrays.arrival.ravel()]
    parts += [arrays.days.astype(np.float64), arrays.season_max.ravel(), arrays.season_level.ravel()]
    return header + np.concatenate(parts).astype("<f8", copy=False).tobytes()


def decode_state(config: ContextConfig, data: bytes) -> ServiceArrays:
    """The arrays ``encode_state`` wrote; ``StateMismatchError`` if written otherwise."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise StateMismatchError("not a detector state snapshot")
    version = int.from_bytes(data[4:6], "little")
    if version != FORMAT_VERSION or len(data) < _HEADER.size:
        raise StateMismatchError(f"written in format {version}, this is format {FORMAT_VERSION}")
    _, _, written_under, count, learned, days = _HEADER.unpack_from(data)
    if written_under != fingerprint(config):
        raise StateMismatchError("written under another context configuration")
    values = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
    bins = 86_400 // config.season_bin_seconds
    sizes = [len(NUMBERS), max(1, config.surprise_window - 1), HISTORIES * min(learned, config.history)]
    sizes += [days, days * bins * HISTORIES, days * bins * 2]
    if len(values) != sum(sizes):
        raise StateMismatchError(f"{len(data)} bytes do not fit a service with {learned} values, {days} days")
    numbers, recent, arrival, held, season_max, season_level = np.split(values, np.cumsum(sizes)[:-1])
    return ServiceArrays(
        int(count),
        int(learned),
        numbers,
        recent,
        arrival.reshape(HISTORIES, -1),
        held.astype(np.int64),
        season_max.reshape(days, bins, HISTORIES),
        season_level.reshape(days, bins, 2),
    )


class StateStore(Protocol):
    """Where ``ContextualScorer`` puts the state of a service it drops from memory, and looks for a service it
    has not in memory (the processor's is a local file filled from the changelog topic)."""

    def get(self, service: str) -> bytes | None: ...

    def put(self, service: str, data: bytes) -> None: ...


class MemoryStateStore:
    """A ``StateStore`` in a dict (tests, evaluation): bounds nothing, only moves state out of the arrays."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}

    def get(self, service: str) -> bytes | None:
        return self.states.get(service)

    def put(self, service: str, data: bytes) -> None:
        self.states[service] = data
