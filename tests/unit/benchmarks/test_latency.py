"""The latency step's arithmetic: event sent -> verdict read, each event once; the machine's CPU pressure."""

import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.pipeline_bench.measure import Latency
from benchmarks.pipeline_bench.paced import PacedLoad
from benchmarks.pipeline_bench.pressure import by_second, some_total_s


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


def test_cpu_pressure_is_given_per_second_of_the_load() -> None:
    # Two cores both taken half of the first second, all of the second; the third second has one sample only.
    samples = [(100.0, 5.0), (100.5, 5.2), (101.0, 5.5), (102.0, 6.5), (102.5, 6.7)]

    shares = by_second(samples, start=100.0, seconds=4)

    assert shares[:2] == [50.0, 100.0]
    assert math.isnan(shares[3])


def test_the_pressure_read_is_the_some_total_in_seconds(tmp_path: Path) -> None:
    stat = tmp_path / "cpu"
    stat.write_text(
        "some avg10=87.48 avg60=91.56 avg300=87.76 total=18171094566\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    )

    assert some_total_s(str(stat)) == pytest.approx(18171.094566)
    assert some_total_s(str(tmp_path / "none")) is None
