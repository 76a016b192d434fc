"""``BATCH_TIMINGS``: where a batch's time went, in one log line; nothing measured when it is off."""

import gc
import logging
import time
from pathlib import Path

import pytest
from anomaly_processor.timings import BatchTimings, GcClock, NoTimings, run_queue_seconds


def test_the_run_queue_wait_is_read_from_schedstat_in_seconds(tmp_path: Path) -> None:
    stat = tmp_path / "schedstat"
    stat.write_text("123456789 2500000000 42\n")  # ns on a CPU, ns waiting on a run queue, time slices

    assert run_queue_seconds(str(stat)) == 2.5
    assert run_queue_seconds(str(tmp_path / "missing")) is None


def test_a_batch_line_names_each_phase_the_ml_hop_and_the_collections_in_it(caplog: pytest.LogCaptureFixture) -> None:
    waited = [0.0]
    timings = BatchTimings(lambda: waited[0])
    try:
        timings.begin()
        with timings.phase("decode"):
            time.sleep(0.002)
        with timings.phase("score"):
            waited[0] += 0.0125  # the ML service answered after 12.5 ms
            gc.collect()
        with caplog.at_level(logging.INFO, logger="anomaly_processor.timings"):
            line = timings.end(40)
    finally:
        timings.close()

    assert line is not None and caplog.messages == [line]
    assert line.startswith("batch of 40 in ")
    phases = line.split(": ", 1)[1]
    assert phases.index("decode ") < phases.index("score ")
    assert "(ML hop 12.5)" in phases and "poll" not in phases  # phases that took no time are left out
    assert "; GC 1 collection " in line and "; CPU " in line
    if run_queue_seconds() is not None:  # Linux
        assert ", waited for a core " in line


def test_a_poll_that_handled_nothing_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    timings = BatchTimings()
    try:
        timings.begin()
        with caplog.at_level(logging.INFO, logger="anomaly_processor.timings"):
            assert timings.end(0) is None
    finally:
        timings.close()
    assert caplog.messages == []


def test_closed_timings_leave_the_garbage_collector_alone() -> None:
    timings = BatchTimings()
    assert any(isinstance(callback, GcClock) for callback in gc.callbacks)
    timings.close()
    assert not any(isinstance(callback, GcClock) for callback in gc.callbacks)


def test_when_off_nothing_is_measured_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    timings = NoTimings()
    timings.begin()
    with timings.phase("score"), caplog.at_level(logging.INFO):
        pass
    assert timings.end(10) is None and caplog.messages == []
