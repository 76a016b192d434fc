"""The binary columns between the processor and the ML service: what goes in comes out, and what is refused."""

import re
import struct

import numpy as np
import pytest

from eventbus.scoring_wire import WireFormatError, decode_answer, decode_batch, encode_answer, encode_batch

LATENCY = [212.5, 0.0, 1480.25, 3.0]
ERRORS = [0.004, 1.0, 0.0, 0.5]
CONTEXTS = [(0.1, -2.5, 3.0), None, (1e-6, 0.0, -0.0), None]


def test_a_batch_with_contexts_round_trips_exactly() -> None:
    batch = decode_batch(encode_batch(LATENCY, ERRORS, CONTEXTS), max_rows=10, max_width=64)
    assert batch.latency_ms.tolist() == LATENCY and batch.error_rate.tolist() == ERRORS
    assert batch.has_context.tolist() == [True, False, True, False]
    assert batch.contexts.tolist() == [[0.1, -2.5, 3.0], [1e-6, 0.0, -0.0]]
    assert len(batch) == 4


@pytest.mark.parametrize("contexts", [None, [None] * 4])
def test_a_batch_without_contexts_carries_only_two_columns(contexts: list[None] | None) -> None:
    body = encode_batch(LATENCY, ERRORS, contexts)
    assert len(body) == 16 + 2 * 8 * 4
    batch = decode_batch(body, max_rows=10, max_width=64)
    assert batch.contexts.shape == (0, 0) and not batch.has_context.any()
    assert batch.latency_ms.tolist() == LATENCY


def test_an_empty_batch_round_trips() -> None:
    assert len(decode_batch(encode_batch([], [], []), max_rows=10, max_width=64)) == 0


def test_contexts_of_different_widths_are_not_encoded() -> None:
    with pytest.raises(ValueError, match="same width"):
        encode_batch([1.0, 2.0], [0.0, 0.0], [(1.0,), (1.0, 2.0)])
    with pytest.raises(ValueError, match="one value per event"):
        encode_batch([1.0, 2.0], [0.0], None)


def _with(body: bytes, offset: int, value: float) -> bytes:
    return body[:offset] + struct.pack("<d", value) + body[offset + 8 :]


GOOD = encode_batch(LATENCY, ERRORS, CONTEXTS)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "16-byte header"),
        (b"JSON" + GOOD[4:], "starts with b'LPB1'"),
        (GOOD[:-1], "do not match the body's size|flags are 0 or 1"),  # one byte short: misread either way
        (GOOD + b"\x00", "do not match the body's size|flags are 0 or 1"),
        (GOOD[:-1] + b"\x02", "has_context flags are 0 or 1"),
        (GOOD[:12] + b"\x01\x00\x00\x00" + GOOD[16:], "unknown header field"),
        (_with(GOOD, 16, float("nan")), "finite"),
        (_with(GOOD, 16, float("inf")), "finite"),
        (_with(GOOD, 16 + 8 * 5, float("-inf")), "finite"),  # in the contexts
        (_with(GOOD, 16 + 8, -0.5), "latency_ms must be >= 0 (event 1)"),
        (_with(GOOD, 16 + 32 + 16, 1.5), "error_rate must be within [0, 1] (event 2)"),
        (_with(GOOD, 16 + 32, -1e-9), "error_rate must be within [0, 1] (event 0)"),
        (encode_batch([1.0] * 11, [0.0] * 11), "at most 10 events"),
        (encode_batch([1.0], [0.0], [tuple([0.0] * 65)]), "at most 64 context features"),
        (encode_batch([1.0, 2.0], [0.0, 0.1])[:-8], "has 48 bytes"),
    ],
)
def test_a_bad_batch_is_refused_naming_why(body: bytes, reason: str) -> None:
    pattern = reason if "|" in reason else re.escape(reason)
    with pytest.raises(WireFormatError, match=pattern):
        decode_batch(body, max_rows=10, max_width=64)


def test_an_answer_round_trips() -> None:
    anomaly = np.array([False, True, False])
    score = np.array([0.25, 1.5, -0.0])
    assert decode_answer(encode_answer(anomaly, score, "iforest-ä1"), 3) == (
        [False, True, False],
        [0.25, 1.5, -0.0],
        "iforest-ä1",
    )


@pytest.mark.parametrize(
    ("body", "expected", "reason"),
    [
        (encode_answer(np.array([True]), np.array([0.5]), "v"), 2, "should hold 2 scores, got 1"),
        (encode_answer(np.array([True]), np.array([np.nan]), "v"), 1, "non-finite"),
        (encode_answer(np.array([True]), np.array([0.5]), "v")[:-1], 1, "wrong size"),
        (encode_answer(np.array([True]), np.array([0.5]), "v")[:-1] + b"\xff", 1, "not UTF-8"),
        (b"LPB1" + encode_answer(np.array([True]), np.array([0.5]), "v")[4:], 1, "starts with b'LPV1'"),
    ],
)
def test_a_bad_answer_is_refused(body: bytes, expected: int, reason: str) -> None:
    with pytest.raises(WireFormatError, match=reason):
        decode_answer(body, expected)


def test_an_anomaly_flag_other_than_0_or_1_is_refused() -> None:
    body = bytearray(encode_answer(np.array([True]), np.array([0.5]), "v"))
    body[16 + 8] = 7
    with pytest.raises(WireFormatError, match="anomaly flag"):
        decode_answer(bytes(body), 1)
