"""One service's detector state as bytes, and back: what the processor keeps in its changelog topic.

A snapshot is a fixed header then the service's arrays, little-endian float64, bit for bit as in memory, so a
restored service scores the next events exactly as it would have (the sorted history is rebuilt by sorting).
The header carries a fingerprint of the ``ContextConfig`` (and of this format): a snapshot written under
another configuration raises ``StateMismatchError`` and the caller lets the service warm up again, rather
than misread arrays of another shape or meaning.

Size: about 100 bytes plus 32 bytes per event of the service's history (4 signals × 8 bytes), so at most
~128 KiB for a service with a full history (4,000 events) and a few hundred bytes for one seen a few times.
"""

import functools
import hashlib
import json
import struct
from dataclasses import asdict
from typing import Protocol

import numpy as np

from streaming_detector.tracker import N_SIGNALS, NUMBERS, ContextConfig, ServiceArrays

FORMAT_VERSION = 1
MAGIC = b"SDST"
# magic, format, configuration fingerprint, events seen, history values learned, gate cool-down left
_HEADER = struct.Struct("<4sH16sqqq")


class StateMismatchError(ValueError):
    """A snapshot this process cannot use: another configuration or format, or not a snapshot at all."""


@functools.cache
def fingerprint(config: ContextConfig) -> bytes:
    """16 bytes that change with any field of ``config`` and with the snapshot format."""
    text = json.dumps({"format": FORMAT_VERSION, "config": asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).digest()[:16]


def encode_state(config: ContextConfig, arrays: ServiceArrays, cooldown: int = 0) -> bytes:
    """A service's tracker state (and its alert gate's cool-down) as bytes."""
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, fingerprint(config), arrays.count, arrays.learned, cooldown)
    body = np.concatenate([arrays.numbers, arrays.recent, arrays.arrival.ravel()]).astype("<f8", copy=False)
    return header + body.tobytes()


def decode_state(config: ContextConfig, data: bytes) -> tuple[ServiceArrays, int]:
    """``(arrays, cooldown)`` from ``encode_state``'s bytes; ``StateMismatchError`` if written otherwise."""
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise StateMismatchError("not a detector state snapshot")
    magic, version, written_under, count, learned, cooldown = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION or written_under != fingerprint(config):
        raise StateMismatchError(f"written under another context configuration (format {version})")
    values = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
    width = max(1, config.surprise_window - 1)
    size = min(learned, config.history)
    if len(values) != len(NUMBERS) + width + N_SIGNALS * size:
        raise StateMismatchError(f"{len(data)} bytes do not fit a service with {learned} values learned")
    numbers = values[: len(NUMBERS)]
    recent = values[len(NUMBERS) : len(NUMBERS) + width]
    arrival = values[len(NUMBERS) + width :].reshape(N_SIGNALS, size)
    return ServiceArrays(int(count), int(learned), numbers, recent, arrival), int(cooldown)


def with_cooldown(data: bytes, cooldown: int) -> bytes:
    """``data`` with its gate cool-down replaced."""
    header = list(_HEADER.unpack_from(data))
    header[-1] = cooldown
    return _HEADER.pack(*header) + data[_HEADER.size :]


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
