"""The send loop without a broker: every event ends delivered or failed, stops are clean, output is as promised.

The producer here is a stand-in that returns kafka-python's own futures and settles them on ``flush``;
the real broker round trip is in ``tests/integration/test_simulator_kafka.py``.
"""

import io
import logging
import threading
from collections import Counter

import orjson
import pytest
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future
from log_simulator.generator import TrafficGenerator
from log_simulator.pacing import RatePacer
from log_simulator.sender import Reporter, send_events

from eventbus import parse_event


class StandInProducer:
    """Queues sends as kafka-python futures; ``flush`` settles them, failing those ``fail`` picks."""

    def __init__(self, fail=lambda n: False, refuse=lambda n: False, on_send=None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.pending: list[tuple[int, Future]] = []
        self.fail, self.refuse, self.on_send = fail, refuse, on_send
        self.flush_times_out = False

    def send(self, topic: str, key: bytes, value: bytes) -> Future:
        n = len(self.sent)
        self.sent.append((topic, key, value))
        if self.on_send:
            self.on_send(n)
        if self.refuse(n):
            raise KafkaTimeoutError("buffer full for 60s")
        future = Future()
        self.pending.append((n, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_times_out:
            raise KafkaTimeoutError("flush timed out")
        for n, future in self.pending:
            if self.fail(n):
                future.failure(NotLeaderForPartitionError("leader moved"))
            else:
                future.success(n)
        self.pending = []


def quiet_reporter(out: io.StringIO | None = None, per_event: bool = False) -> Reporter:
    return Reporter(per_event=per_event, quiet=out is None, progress_interval_s=2.0, out=out or io.StringIO())


def run(producer: StandInProducer, count: int | None = 300, **kwargs):
    generator = TrafficGenerator(seed=1, anomaly_rate=0.05)
    kwargs.setdefault("stop", threading.Event())
    kwargs.setdefault("reporter", quiet_reporter())
    summary = send_events(
        producer,
        "logs-test",
        generator.events(),
        RatePacer(0),
        count=count,
        anomalies_started=generator.stats.anomalies_started,
        **kwargs,
    )
    return summary, generator


def test_count_is_sent_keyed_by_service_and_all_delivered() -> None:
    producer = StandInProducer()
    summary, generator = run(producer, count=300)
    assert len(producer.sent) == 300 and summary.sent == 300
    assert summary.delivered == 300 and summary.failed == 0 and summary.unconfirmed == 0
    events = [parse_event(value) for _, _, value in producer.sent]
    assert all(key == event.service.encode() for (_, key, _), event in zip(producer.sent, events, strict=True))
    assert {topic for topic, _, _ in producer.sent} == {"logs-test"}
    assert summary.labels == Counter(e.label for e in events)
    assert summary.anomalies_started == generator.stats.anomalies_started
    assert summary.stopped_by == "count"


def test_delivery_failures_and_refused_sends_are_counted_not_lost() -> None:
    producer = StandInProducer(fail=lambda n: n % 10 == 0, refuse=lambda n: n == 5)
    summary, _ = run(producer, count=200)
    assert summary.sent == 200
    assert summary.failed == 20 + 1
    assert summary.delivered == 200 - 21
    assert "failed 21" in summary.summary_line()


def test_a_flush_that_times_out_reports_unconfirmed_events() -> None:
    producer = StandInProducer()
    producer.flush_times_out = True
    summary, _ = run(producer, count=50)
    assert summary.unconfirmed == 50
    assert "unconfirmed at exit: 50" in summary.summary_line()


def test_a_stop_request_ends_the_run_after_flushing() -> None:
    stop = threading.Event()
    producer = StandInProducer(on_send=lambda n: stop.set() if n == 41 else None)
    summary, _ = run(producer, count=None, stop=stop)
    assert summary.stopped_by == "stop request"
    assert summary.sent == len(producer.sent) == 42  # the batch under way stopped too
    assert summary.delivered == summary.sent  # what was in flight was flushed, not dropped
    assert producer.pending == []


def test_duration_ends_the_run() -> None:
    ticks = iter(range(1_000_000))
    summary, _ = run(StandInProducer(), count=None, duration_s=5.0, clock=lambda: float(next(ticks)))
    assert summary.stopped_by == "duration"
    assert summary.sent > 0


def test_low_rate_output_is_one_sent_line_per_event_then_a_summary() -> None:
    out = io.StringIO()
    producer = StandInProducer()
    run(producer, count=5, reporter=quiet_reporter(out, per_event=True))
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["Sent:"] * 5
    assert [orjson.loads(line.split(" ", 1)[1]) for line in lines] == [orjson.loads(v) for _, _, v in producer.sent]


def test_quiet_prints_only_the_summary() -> None:
    out = io.StringIO()
    reporter = Reporter(per_event=True, quiet=True, progress_interval_s=0.001, out=out)
    summary, _ = run(StandInProducer(), count=2000, reporter=reporter)
    reporter.final(summary)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Summary: sent 2000")


def test_high_rate_output_is_progress_lines() -> None:
    out = io.StringIO()
    reporter = Reporter(per_event=False, quiet=False, progress_interval_s=2.0, out=out)
    ticks = iter(range(1_000_000))
    run(StandInProducer(), count=20_000, reporter=reporter, clock=lambda: next(ticks) * 0.5)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("Progress: sent ") for line in lines)
    assert "anomalies injected: " in lines[-1] and lines[-1].endswith("failed 0")


def test_a_rate_the_producer_cannot_keep_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    reporter = Reporter(per_event=False, quiet=True, progress_interval_s=2.0, out=io.StringIO(), target_rate=1e9)
    ticks = iter(range(1_000_000))
    with caplog.at_level(logging.WARNING, logger="log_simulator.sender"):
        run(StandInProducer(), count=20_000, reporter=reporter, clock=lambda: float(next(ticks)))
    assert "asked for 1000000000 events/s but sending" in caplog.text
