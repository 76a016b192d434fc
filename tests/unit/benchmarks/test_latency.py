"""The latency step's arithmetic: event sent -> verdict read, each event once."""

import numpy as np
import pytest

from benchmarks.pipeline_bench.measure import Latency
from benchmarks.pipeline_bench.paced import PacedLoad


def test_an_event_verdicted_twice_counts_once_at_its_first_verdict() -> None:
    load = PacedLoad(send_times=np.array([10.0, 10.001, 10.002]), seconds=0.002, behind_s=0.0)
    # Event 1's verdict came again 45 s later (redelivered after a rebalance): not a 45-s latency.
    received = np.array([0, 1, 2, 1], dtype=np.int64)
    arrivals = np.array([10.005, 10.006, 10.007, 55.0])
    created = np.array([10.004, 10.005, 10.006, 54.9])

    latency = Latency.of(1000.0, load, received, arrivals, created)

    assert latency.received == 3
    assert latency.max_ms == pytest.approx(5.0)
    assert latency.to_verdict_p99_ms == pytest.approx(4.0)


def test_without_creation_times_only_read_latency_is_given() -> None:
    load = PacedLoad(send_times=np.array([1.0, 2.0]), seconds=1.0, behind_s=0.0)

    latency = Latency.of(1.0, load, np.array([1, 0], dtype=np.int64), np.array([2.5, 1.5]))

    assert (latency.received, latency.p50_ms, latency.to_verdict_p50_ms) == (2, pytest.approx(500.0), None)
