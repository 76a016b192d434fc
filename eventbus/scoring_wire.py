"""A compact binary form of ``POST /predict/batch`` between the processor and the ML service (columns, not rows).

JSON stays the service's format; this one is chosen by ``Content-Type: application/vnd.log-pipeline.scoring-batch``
(the answer comes in it when the request's ``Accept`` names it too). A service that does not know it answers
415, and the client goes back to JSON. Only what is scored travels: per event its latency, its error rate
and, when its service is warm, its context features (all contexts of one batch have the same width).

Request, little-endian, every float array 8-byte aligned::

    b"LPB1" | rows: u32 | width: u32 (0: no contexts) | 0: u32
    latency_ms: f64[rows] | error_rate: f64[rows] | contexts: f64[with_context * width] (row order)
    has_context: u8[rows] (only when width > 0; 0 or 1)

Answer::

    b"LPV1" | rows: u32 | version length: u32 | 0: u32 | score: f64[rows] | anomaly: u8[rows] | version: UTF-8

The readers refuse (``WireFormatError``) what the JSON path refuses: a body of the wrong size or header, a
non-finite number, a latency below 0, an error rate outside [0, 1], a context flag other than 0 or 1.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

SCORING_BATCH_MEDIA_TYPE = "application/vnd.log-pipeline.scoring-batch"
_REQUEST_MAGIC = b"LPB1"
_ANSWER_MAGIC = b"LPV1"
_HEADER = struct.Struct("<4sIII")
_F8 = np.dtype("<f8")


class WireFormatError(ValueError):
    """A body that is not a valid binary batch or answer; the message says what is wrong."""


@dataclass(frozen=True)
class ScoringBatch:
    """A decoded request: one row per event; ``contexts`` holds the rows flagged in ``has_context``, in order."""

    latency_ms: NDArray[np.float64]
    error_rate: NDArray[np.float64]
    has_context: NDArray[np.bool_]
    contexts: NDArray[np.float64]  # shape (number of flagged rows, width)

    def __len__(self) -> int:
        return len(self.latency_ms)


def encode_batch(
    latency_ms: Sequence[float], error_rate: Sequence[float], contexts: Sequence[Sequence[float] | None] | None = None
) -> bytes:
    """The request body; ``contexts[i]`` None for an event sent without one. ``ValueError`` if widths differ."""
    rows = len(latency_ms)
    if len(error_rate) != rows or (contexts is not None and len(contexts) != rows):
        raise ValueError("every column needs one value per event")
    given = [] if contexts is None else [context for context in contexts if context is not None]
    width = len(given[0]) if given else 0
    if any(len(context) != width for context in given):
        raise ValueError("the contexts of one binary batch must have the same width")
    parts = [
        _HEADER.pack(_REQUEST_MAGIC, rows, width, 0),
        np.asarray(latency_ms, dtype=_F8).tobytes(),
        np.asarray(error_rate, dtype=_F8).tobytes(),
    ]
    if width:
        assert contexts is not None
        parts.append(np.asarray(given, dtype=_F8).tobytes())
        parts.append(bytes(context is not None for context in contexts))
    return b"".join(parts)


def decode_batch(body: bytes, max_rows: int, max_width: int) -> ScoringBatch:
    """The request ``body`` read and checked; ``WireFormatError`` naming the first problem."""
    rows, width, _ = _header(body, _REQUEST_MAGIC, "batch")
    if rows > max_rows:
        raise WireFormatError(f"at most {max_rows} events in one batch, got {rows}")
    if width > max_width:
        raise WireFormatError(f"at most {max_width} context features, got {width}")
    floats = 2 * rows * 8
    if width == 0:
        if len(body) != _HEADER.size + floats:
            raise WireFormatError(f"a batch of {rows} events without contexts has {_HEADER.size + floats} bytes")
        flags = np.zeros(rows, dtype=np.bool_)
        flagged = 0
    else:
        flag_bytes = np.frombuffer(body, dtype=np.uint8, count=rows, offset=len(body) - rows) if rows else None
        if flag_bytes is None or len(body) < _HEADER.size + floats + rows:
            raise WireFormatError("a batch with contexts has at least one event and a flag per event")
        if (flag_bytes > 1).any():
            raise WireFormatError("has_context flags are 0 or 1")
        flags = flag_bytes.astype(np.bool_)
        flagged = int(np.count_nonzero(flags))
        if len(body) != _HEADER.size + floats + flagged * width * 8 + rows:
            raise WireFormatError(f"{flagged} contexts of {width} features do not match the body's size")
    latency = np.frombuffer(body, dtype=_F8, count=rows, offset=_HEADER.size)
    errors = np.frombuffer(body, dtype=_F8, count=rows, offset=_HEADER.size + rows * 8)
    contexts = np.frombuffer(body, dtype=_F8, count=flagged * width, offset=_HEADER.size + floats)
    if not (np.isfinite(latency).all() and np.isfinite(errors).all() and np.isfinite(contexts).all()):
        raise WireFormatError("every number must be finite")
    if (latency < 0).any():
        raise WireFormatError(f"latency_ms must be >= 0 (event {int(np.argmax(latency < 0))})")
    outside = (errors < 0) | (errors > 1)
    if outside.any():
        raise WireFormatError(f"error_rate must be within [0, 1] (event {int(np.argmax(outside))})")
    return ScoringBatch(latency, errors, flags, contexts.reshape(flagged, width))


def encode_answer(anomaly: NDArray[np.bool_], score: NDArray[np.float64], version: str) -> bytes:
    """The answer body: a score and an anomaly flag per event, and the model's version."""
    label = version.encode()
    return b"".join(
        (
            _HEADER.pack(_ANSWER_MAGIC, len(score), len(label), 0),
            np.asarray(score, dtype=_F8).tobytes(),
            np.asarray(anomaly, dtype=np.bool_).tobytes(),
            label,
        )
    )


def decode_answer(body: bytes, expected: int) -> tuple[list[bool], list[float], str]:
    """(anomaly, score, model version) of an answer for ``expected`` events; ``WireFormatError`` if it is not one."""
    rows, label_length, _ = _header(body, _ANSWER_MAGIC, "answer")
    if rows != expected:
        raise WireFormatError(f"answer should hold {expected} scores, got {rows}")
    if len(body) != _HEADER.size + rows * 9 + label_length:
        raise WireFormatError(f"an answer of {rows} scores and a {label_length}-byte version has the wrong size")
    score = np.frombuffer(body, dtype=_F8, count=rows, offset=_HEADER.size)
    flags = np.frombuffer(body, dtype=np.uint8, count=rows, offset=_HEADER.size + rows * 8)
    if not np.isfinite(score).all() or (flags > 1).any():
        raise WireFormatError("answer has a non-finite score or an anomaly flag other than 0 or 1")
    try:
        version = body[_HEADER.size + rows * 9 :].decode()
    except UnicodeDecodeError:
        raise WireFormatError("answer's model version is not UTF-8") from None
    return flags.astype(np.bool_).tolist(), score.tolist(), version


def _header(body: bytes, magic: bytes, what: str) -> tuple[int, int, int]:
    if len(body) < _HEADER.size:
        raise WireFormatError(f"a binary {what} starts with a {_HEADER.size}-byte header")
    found, first, second, reserved = _HEADER.unpack_from(body)
    if found != magic:
        raise WireFormatError(f"a binary {what} starts with {magic!r}, got {found!r}")
    if reserved:
        raise WireFormatError(f"unknown header field {reserved} in a binary {what}")
    return first, second, reserved
