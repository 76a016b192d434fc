"""The measurements: end-to-end throughput, latency at offered loads, and memory over a long run."""

import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from benchmarks.pipeline_bench import events, paced, pressure, profiling
from benchmarks.pipeline_bench.report import crossing_time, percentile, rate_between
from benchmarks.pipeline_bench.stack import (
    ORIGINAL_DIR,
    PROCESSOR_MAIN,
    Stack,
    StepFailed,
    cpu_seconds,
    free_port,
    fresh_settings,
    pss_mib,
    rss_mib,
)
from devstack.processes import Child
from eventbus import KafkaSettings, make_consumer

Progress = Callable[[str], None]
POLL_S = 0.05


class VerdictCounter:
    """Sum of the end offsets of ``predictions``: how many verdicts are in, without reading them."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._consumer: KafkaConsumer = make_consumer(settings, group_id=None, client_id="bench-counter")
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._partitions = [TopicPartition(topic, p) for p in sorted(partitions)]

    def count(self) -> int:
        return int(sum(self._consumer.end_offsets(self._partitions).values()))

    def close(self) -> None:
        self._consumer.close()


def processor_env(settings: KafkaSettings, service_url: str, workers: str | None = None) -> dict[str, str]:
    """``workers``: PROCESSOR_WORKERS (a number or auto); None leaves the processor's default."""
    env = {
        **os.environ,
        **settings.environment(),
        "PROCESSOR_GROUP": f"bench-{uuid.uuid4().hex[:8]}",
        "ML_SERVICE_URL": service_url,
        "PRINT_MODE": "summary",
        "PROCESSOR_METRICS_PORT": str(free_port()),  # the default port may be taken by another processor
    }
    if workers is not None:
        env["PROCESSOR_WORKERS"] = workers
    return env


def processor_argv() -> list[str]:
    return [sys.executable, str(PROCESSOR_MAIN)]


@dataclass
class EndToEnd:
    events: int
    preload_rate: float
    total_s: float  # process start until the last verdict is in
    first_verdict_s: float | None
    steady_rate: float | None  # between 10% and 90% of the verdicts
    verdicts: int
    dead_letters: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)
    profile_seconds: dict[str, float] = field(default_factory=dict)  # how long py-spy sampled each process
    workers: str | None = None  # PROCESSOR_WORKERS, None: the processor's default
    # CPU seconds used during the run by the processor (with its workers), the ML service and the broker.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.total_s


def end_to_end_project(
    stack: Stack,
    bootstrap: str,
    service_url: str,
    count: int,
    progress: Progress,
    timeout_s: float = 600.0,
    profile: tuple[Path, int] | None = None,
    workers: str | None = None,
    service_pid: int = 0,
    keyless: bool = False,
) -> EndToEnd:
    """``profile``: (folder, service pid) to sample the processor and the service with py-spy meanwhile;
    ``workers``: PROCESSOR_WORKERS; ``service_pid``: to count the service's CPU time too; ``keyless``: the
    events are sent without a key, round robin, as the original design's producer sends them."""
    settings = fresh_settings(bootstrap, "e2e")
    loaded = events.preload(settings, count, keyless=keyless)
    progress(
        f"preloaded {loaded.events:,} events in {loaded.seconds:.1f}s "
        f"({loaded.rate:,.0f}/s, {loaded.processes} producers)"
    )
    counter = VerdictCounter(settings, settings.predictions_topic)
    dlq = VerdictCounter(settings, settings.dlq_topic)
    try:
        broker_pid = stack.broker.pid() if stack.broker is not None else None
        others = {"service": service_pid, "broker": broker_pid or 0}
        cpu_before = {name: cpu_seconds(pid) for name, pid in others.items() if pid}
        began = time.perf_counter()
        processor = stack.start("processor-e2e", processor_argv(), processor_env(settings, service_url, workers))
        folder, profiled_service = profile if profile else (None, 0)
        targets = {"processor": processor.pid, "service": profiled_service}
        with profiling.sampled(folder, targets) as profile_seconds:
            samples = _count_until(counter.count, count, "verdicts", began, processor, timeout_s, progress)
        cpu = {"processor": cpu_seconds(processor.pid)}  # its workers are its children: counted before they stop
        cpu |= {name: cpu_seconds(pid) - cpu_before[name] for name, pid in others.items() if pid}
        stack.stop(processor)
        return EndToEnd(
            events=count,
            preload_rate=loaded.rate,
            total_s=samples[-1][0],
            first_verdict_s=crossing_time(samples, 1),
            steady_rate=rate_between(samples, count // 10, count * 9 // 10),
            verdicts=counter.count(),
            dead_letters=dlq.count(),
            samples=samples,
            profile_seconds=profile_seconds,
            workers=workers,
            cpu=cpu,
        )
    finally:
        counter.close()
        dlq.close()


def _count_until(
    done_now: Callable[[], int],
    count: int,
    unit: str,
    began: float,
    processor: Child,
    timeout_s: float,
    progress: Progress,
) -> list[tuple[float, int]]:
    """Poll ``done_now()`` until it reaches ``count``: (seconds since ``began``, done) samples; fails if the
    processor exits or ``timeout_s`` passes first."""
    samples: list[tuple[float, int]] = []
    next_progress = began + 5
    while True:
        done = done_now()
        now = time.perf_counter()
        samples.append((now - began, done))
        if done >= count:
            return samples
        if not processor.alive():
            raise StepFailed(f"{processor.name} exited with {processor.returncode}:\n{processor.log_tail()}")
        if now - began > timeout_s:
            raise StepFailed(f"only {done:,} of {count:,} {unit} after {timeout_s:.0f}s")
        if now >= next_progress:
            progress(f"  {done:,} / {count:,} {unit} after {now - began:.0f}s")
            next_progress += 5
        time.sleep(POLL_S)


class LineClock:
    """Reads a child's stdout in a thread; stamps each ``Log: ...`` line of the original processor on arrival."""

    EVENT_ID = re.compile(r"'event_id': '([^']*)'")

    def __init__(self, stream: IO[bytes]) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            now = time.time()
            if raw.startswith(b"Log: "):
                match = self.EVENT_ID.search(raw.decode(errors="replace"))
                self.arrivals.append((now, match.group(1) if match else ""))

    @property
    def count(self) -> int:
        return len(self.arrivals)


def start_original_processor(stack: Stack, settings: KafkaSettings, service_url: str) -> tuple[Child, LineClock]:
    env = {**os.environ, **settings.environment(), "ML_SERVICE_URL": service_url, "PYTHONUNBUFFERED": "1"}
    processor = stack.start(
        "original-processor", [sys.executable, str(ORIGINAL_DIR / "processor.py")], env, pipe_stdout=True
    )
    assert processor.process is not None and processor.process.stdout is not None
    return processor, LineClock(processor.process.stdout)


def end_to_end_original(
    stack: Stack,
    bootstrap: str,
    service_url: str,
    count: int,
    progress: Progress,
    timeout_s: float = 300.0,
    profile: tuple[Path, int] | None = None,
) -> EndToEnd:
    """``profile``: (folder, the original service's pid) to sample both original processes meanwhile."""
    settings = fresh_settings(bootstrap, "orig-e2e")
    loaded = events.preload(settings, count, processes=1)
    began = time.perf_counter()
    began_wall = time.time()
    processor, clock = start_original_processor(stack, settings, service_url)
    folder, service_pid = profile if profile else (None, 0)
    targets = {"original-processor": processor.pid, "original-service": service_pid}
    with profiling.sampled(folder, targets) as profile_seconds:
        _count_until(lambda: clock.count, count, "lines", began, processor, timeout_s, progress)
    stack.stop(processor)
    # Its verdicts are lines on stdout (it writes nothing to Kafka): count them as they arrived.
    samples = [(t - began_wall, n + 1) for n, (t, _) in enumerate(clock.arrivals[:count])]
    return EndToEnd(
        events=count,
        preload_rate=loaded.rate,
        total_s=samples[-1][0],
        first_verdict_s=samples[0][0],
        steady_rate=rate_between(samples, count // 10, count * 9 // 10),
        verdicts=clock.count,
        profile_seconds=profile_seconds,
    )


def _p99_by_second(sent_s: np.ndarray, latencies_ms: np.ndarray) -> list[float]:
    """The p99 latency of the events sent in each whole second since the load began."""
    second = sent_s.astype(np.int64)
    return [round(percentile(latencies_ms[second == s].tolist(), 99), 1) for s in range(int(second.max()) + 1)]


@dataclass
class Latency:
    offered_rate: float
    achieved_rate: float
    sent: int
    received: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    # Event sent -> verdict record created by the processor's producer (its CreateTime, ms resolution):
    # the processor's share; the rest is the verdict's way back through the broker to a consumer.
    to_verdict_p50_ms: float | None = None
    to_verdict_p99_ms: float | None = None
    pacer_behind_ms: float | None = None  # the most the load generator sent an event after its due time
    # p99 of the events sent in each second of the load: a stall shows as one bad second, saturation as many.
    p99_by_second_ms: list[float] = field(default_factory=list)
    # The machine's CPU pressure in each of those seconds (% of it in which a runnable task waited for a core).
    cpu_pressure_by_second: list[float] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        offered: float,
        load: paced.PacedLoad,
        received: np.ndarray,
        arrivals: np.ndarray,
        verdict_created: np.ndarray | None = None,
    ) -> "Latency":
        """``received``: event indexes that got a verdict, ``arrivals``: when (wall clock) each one did. An event
        with several verdicts (redelivered, at least once) counts once, at its first."""
        created = np.full(len(arrivals), np.nan) if verdict_created is None else verdict_created
        order = np.argsort(arrivals, kind="stable")
        received, first = np.unique(received[order], return_index=True)
        arrivals, created = arrivals[order][first], created[order][first]
        sent = load.send_times[received]
        latencies = ((arrivals - sent) * 1000.0).tolist()
        to_verdict = [] if verdict_created is None else ((created - sent) * 1000.0).tolist()
        return cls(
            offered_rate=offered,
            achieved_rate=load.achieved_rate,
            sent=len(load.send_times),
            received=len(latencies),
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            max_ms=max(latencies) if latencies else float("nan"),
            to_verdict_p50_ms=percentile(to_verdict, 50) if to_verdict else None,
            to_verdict_p99_ms=percentile(to_verdict, 99) if to_verdict else None,
            p99_by_second_ms=_p99_by_second(sent - load.send_times.min(), np.asarray(latencies)) if len(sent) else [],
        )


def latency_project(
    stack: Stack,
    bootstrap: str,
    service_url: str,
    rate: float,
    seconds: float,
    progress: Progress,
    workers: str | None = None,
) -> Latency:
    settings = fresh_settings(bootstrap, f"lat{int(rate)}")
    processor = stack.start("processor-latency", processor_argv(), processor_env(settings, service_url, workers))
    return _latency(stack, settings, processor, rate, seconds, progress)


def latency_floor(stack: Stack, bootstrap: str, rate: float, seconds: float, progress: Progress) -> Latency:
    """The same load and recorder through ``relay`` (the processor's Kafka clients and options, no work)."""
    settings = fresh_settings(bootstrap, f"floor{int(rate)}")
    env = {**os.environ, **settings.environment(), "RELAY_GROUP": f"bench-relay-{uuid.uuid4().hex[:8]}"}
    relay = stack.start("relay-latency", [sys.executable, "-m", "benchmarks.pipeline_bench.relay"], env)
    return _latency(stack, settings, relay, rate, seconds, progress)


def _latency(
    stack: Stack, settings: KafkaSettings, processor: Child, rate: float, seconds: float, progress: Progress
) -> Latency:
    """Offer ``rate`` events/s to ``processor`` (started on ``settings``' topics) and time each verdict, with the
    paced librdkafka producer and reader of ``paced`` (each in its own process)."""
    pool = events.event_pool()
    count = int(rate * seconds)
    prefix = "lat-"
    events.check_schema(events.serialise(pool, prefix, 0, 3))
    warmup = events.serialise(pool, "warm-", 0, 200)
    producer = events.fast_producer(settings, linger_ms=1)
    counter = VerdictCounter(settings, settings.predictions_topic)
    probe = paced.LatencyProbe(settings, prefix, count, rate, seconds)
    try:
        # Warm up: the processor has joined its group and scored a first few events before the clock runs.
        events.paced_send(producer, settings.logs_topic, warmup, rate=200)
        deadline = time.monotonic() + 60
        while counter.count() < len(warmup):
            if time.monotonic() > deadline or not processor.alive():
                raise StepFailed(f"no verdicts for the warm-up events:\n{processor.log_tail()}")
            time.sleep(POLL_S)
        if not probe.start():
            raise StepFailed("the paced producer or the verdict reader did not start")
        progress(f"  offering {rate:,.0f} events/s for {seconds:.0f}s")
        sampler = pressure.PressureSampler()
        sampler.start()
        try:
            load, verdicts = probe.run()
        finally:
            samples = sampler.stop()
        assert verdicts is not None
        result = Latency.of(rate, load, verdicts.indexes, verdicts.read_at, verdicts.created_at)
        result.pacer_behind_ms = load.behind_s * 1000
        if len(load.send_times) and samples:
            result.cpu_pressure_by_second = pressure.by_second(
                samples, float(load.send_times.min()), len(result.p99_by_second_ms)
            )
        return result
    finally:
        probe.close()
        producer.close()
        counter.close()
        stack.stop(processor)


def latency_original(
    stack: Stack, bootstrap: str, service_url: str, rate: float, seconds: float, progress: Progress
) -> Latency:
    settings = fresh_settings(bootstrap, f"orig-lat{int(rate)}")
    pool = events.event_pool()
    count = int(rate * seconds)
    warmup = events.serialise(pool, "warm-", 0, 50)
    producer = events.fast_producer(settings, linger_ms=1)
    processor, clock = start_original_processor(stack, settings, service_url)
    probe = paced.LatencyProbe(settings, "lat-", count, rate, seconds, read=False)
    try:
        events.paced_send(producer, settings.logs_topic, warmup, rate=100)
        deadline = time.monotonic() + 60
        while clock.count < len(warmup):
            if time.monotonic() > deadline or not processor.alive():
                raise StepFailed(f"no lines for the warm-up events:\n{processor.log_tail()}")
            time.sleep(POLL_S)
        if not probe.start():
            raise StepFailed("the paced producer did not start")
        progress(f"  offering {rate:,.0f} events/s for {seconds:.0f}s to the original design")
        load, _ = probe.run()
        deadline = time.monotonic() + 60
        while sum(1 for _, eid in clock.arrivals if eid.startswith("lat-")) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        timed = [(t, int(eid[4:])) for t, eid in clock.arrivals if eid.startswith("lat-")]
        received = np.array([i for _, i in timed], dtype=np.int64)
        arrivals = np.array([t for t, _ in timed])
        return Latency.of(rate, load, received, arrivals)
    finally:
        probe.close()
        producer.close()
        stack.stop(processor)


@dataclass
class Memory:
    events: int
    samples: list[dict[str, float]]  # seconds, verdicts, processor/service RSS and HWM in MiB
    processor_rss_at_10pct: float | None
    processor_rss_at_end: float | None
    processor_peak: float
    processor_pss_at_end: float  # shared pages split between the processes that map them
    service_rss_at_10pct: float | None
    service_rss_at_end: float | None
    service_peak: float
    seconds: float

    @property
    def processor_growth(self) -> float | None:
        if not self.processor_rss_at_10pct or self.processor_rss_at_end is None:
            return None
        return self.processor_rss_at_end / self.processor_rss_at_10pct - 1.0


def memory_run(
    stack: Stack,
    bootstrap: str,
    service_url: str,
    service_pid: int,
    count: int,
    progress: Progress,
    workers: str | None = None,
) -> Memory:
    settings = fresh_settings(bootstrap, "mem")
    loaded = events.preload(settings, count)
    progress(f"preloaded {loaded.events:,} events in {loaded.seconds:.1f}s ({loaded.rate:,.0f}/s)")
    counter = VerdictCounter(settings, settings.predictions_topic)
    samples: list[dict[str, float]] = []
    try:
        began = time.perf_counter()
        processor = stack.start("processor-memory", processor_argv(), processor_env(settings, service_url, workers))
        next_progress = began + 10
        while True:
            done = counter.count()
            p_rss, p_hwm = rss_mib(processor.pid)
            s_rss, s_hwm = rss_mib(service_pid)
            now = time.perf_counter() - began
            samples.append(
                {
                    "seconds": now,
                    "verdicts": done,
                    "processor_rss": p_rss,
                    "processor_hwm": p_hwm,
                    "service_rss": s_rss,
                    "service_hwm": s_hwm,
                }
            )
            if done >= count:
                processor_pss = pss_mib(processor.pid)
                break
            if not processor.alive():
                raise StepFailed(f"the processor exited:\n{processor.log_tail()}")
            if now > 1800:
                raise StepFailed(f"only {done:,} of {count:,} verdicts after {now:.0f}s")
            if time.perf_counter() >= next_progress:
                progress(f"  {done:,} / {count:,} verdicts, processor RSS {p_rss:.0f} MiB, service {s_rss:.0f} MiB")
                next_progress += 10
            time.sleep(1.0)
        stack.stop(processor)
    finally:
        counter.close()
    tenth = next((s for s in samples if s["verdicts"] >= count // 10), None)
    end = samples[-1]
    return Memory(
        events=count,
        samples=samples,
        processor_rss_at_10pct=tenth["processor_rss"] if tenth else None,
        processor_rss_at_end=end["processor_rss"],
        processor_peak=max(s["processor_hwm"] for s in samples),
        processor_pss_at_end=processor_pss,
        service_rss_at_10pct=tenth["service_rss"] if tenth else None,
        service_rss_at_end=end["service_rss"],
        service_peak=max(s["service_hwm"] for s in samples),
        seconds=end["seconds"],
    )


@dataclass
class LibraryFloor:
    """What kafka-python alone does in one process on this machine: the ceiling of any Python processor."""

    events: int
    produce_rate: float  # one process sending pre-serialised records (acks=all), nothing else
    consume_rate: float  # one process polling them with the processor's consumer settings, nothing else

    @property
    def consume_and_produce_rate(self) -> float:
        """Both in one process, with no parsing, scoring or serialising: 1 / (1/consume + 1/produce)."""
        return 1.0 / (1.0 / self.produce_rate + 1.0 / self.consume_rate)


def library_floor(bootstrap: str, count: int, progress: Progress) -> LibraryFloor:
    settings = fresh_settings(bootstrap, "floor")
    produced = events.preload(settings, count, processes=1)
    progress(f"  kafka-python, one process: produce {produced.rate:,.0f} records/s")
    consumer = make_consumer(
        settings,
        settings.logs_topic,
        group_id=f"bench-floor-{uuid.uuid4().hex[:8]}",
        client_id="bench-floor",
        max_poll_records=2000,
        max_partition_fetch_bytes=2 * 1024 * 1024,
    )
    try:
        consumed = 0
        while not consumer.assignment():
            consumer.poll(timeout_ms=100, max_records=1)  # joins the group; what it returns is read again below
        consumer.seek_to_beginning()
        began = time.perf_counter()
        deadline = began + 300
        while consumed < count and time.perf_counter() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                consumed += len(records)
        seconds = time.perf_counter() - began
    finally:
        consumer.close()
    floor = LibraryFloor(events=count, produce_rate=produced.rate, consume_rate=consumed / seconds)
    progress(f"  kafka-python, one process: consume {floor.consume_rate:,.0f} records/s")
    return floor
