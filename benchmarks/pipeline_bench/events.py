"""Events for the benchmark: pre-serialised realistic ``LogEvent`` JSON, preloaded fast or produced at a steady pace."""

import multiprocessing
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from kafka import KafkaProducer
from kafka.codec import has_lz4
from kafka.partitioner.default import murmur2

from eventbus import KafkaSettings, LogEvent, make_producer
from streaming_detector.profiles import generate_normal_events

POOL_SIZE = 20_000
POOL_SEED = 7


def event_pool(size: int = POOL_SIZE, seed: int = POOL_SEED) -> list[dict[str, Any]]:
    """Realistic healthy events (the simulator's profile) as dicts; the benchmark cycles through them."""
    return [event.model_dump() for event in generate_normal_events(size, seed=seed)]


def serialise(pool: list[dict[str, Any]], prefix: str, start: int, stop: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of events ``start``..``stop``; event ``i`` is ``pool[i % len]`` with event_id ``prefix + i``."""
    out = []
    size = len(pool)
    for i in range(start, stop):
        event = dict(pool[i % size])
        event["event_id"] = f"{prefix}{i}"
        out.append((event["service"].encode(), orjson.dumps(event)))
    return out


def original_records(pool: list[dict[str, Any]], start: int, stop: int) -> list[tuple[bytes, bytes]]:
    """(no key, value) of events ``start``..``stop`` as the original simulator sends them: four fields, a float
    epoch timestamp, no event id."""
    out = []
    size = len(pool)
    for i in range(start, stop):
        event = pool[i % size]
        original = {
            "timestamp": datetime.fromisoformat(event["timestamp"]).timestamp(),
            "service": event["service"],
            "latency_ms": event["latency_ms"],
            "error_rate": event["error_rate"],
        }
        out.append((b"", orjson.dumps(original)))
    return out


def check_schema(records: list[tuple[bytes, bytes]]) -> None:
    """The events must be ones the project accepts: a bug here would turn the benchmark into a DLQ test."""
    for _, value in records[:3]:
        LogEvent.model_validate_json(value)


def fast_producer(settings: KafkaSettings, linger_ms: int = 20) -> KafkaProducer:
    """The project's producer (acks=all, idempotent), tuned for bulk: big batches, lz4 when installed."""
    return make_producer(
        settings,
        linger_ms=linger_ms,
        batch_size=512 * 1024,
        compression_type="lz4" if has_lz4() else None,
        client_id="bench-producer",
    )


class KeyPartitions:
    """kafka-python's default partition of a key (murmur2), computed once per key instead of per record."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._partitions = sorted(producer.partitions_for(topic))
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            partition = self._partitions[(murmur2(key) & 0x7FFFFFFF) % len(self._partitions)]
            self._cache[key] = partition
        return partition


@dataclass
class PreloadResult:
    events: int
    seconds: float  # sending and flushing only, slowest worker (serialising is done before)
    processes: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def _preload_worker(args: tuple[dict[str, Any], str, int, int, Any, bool, bool]) -> tuple[int, float]:
    settings_fields, prefix, start, stop, barrier, keyless, as_original = args
    settings = KafkaSettings(**settings_fields)
    pool = event_pool()
    records = original_records(pool, start, stop) if as_original else serialise(pool, prefix, start, stop)
    check_schema(records)
    producer = fast_producer(settings)
    partition_of = KeyPartitions(producer, settings.logs_topic)
    topic = settings.logs_topic
    barrier.wait()
    began = time.perf_counter()
    send = producer.send
    if keyless:
        partitions = len(producer.partitions_for(topic))
        for i, (_, value) in enumerate(records, start):
            send(topic, value=value, partition=i % partitions)
    else:
        for key, value in records:
            send(topic, value=value, key=key, partition=partition_of(key))
    producer.flush()
    elapsed = time.perf_counter() - began
    producer.close()
    return stop - start, elapsed


def preload(
    settings: KafkaSettings,
    count: int,
    processes: int = 2,
    prefix: str = "pre-",
    keyless: bool = False,
    original_design: bool = False,
) -> PreloadResult:
    """``count`` events into ``logs`` from ``processes`` producer processes, all starting together; ``keyless``:
    without a key, spread round robin over the partitions (each service's events on every partition);
    ``original_design``: the original simulator's four fields, no event id (implies keyless)."""
    keyless = keyless or original_design
    processes = max(1, min(processes, count))
    bounds = np.linspace(0, count, processes + 1).astype(int)
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs Kafka client threads
    with context.Manager() as manager:
        barrier = manager.Barrier(processes)
        fields = settings.model_dump()
        jobs = [
            (fields, prefix, int(bounds[i]), int(bounds[i + 1]), barrier, keyless, original_design)
            for i in range(processes)
        ]
        with context.Pool(processes) as pool:
            results = pool.map(_preload_worker, jobs)
    return PreloadResult(events=sum(n for n, _ in results), seconds=max(s for _, s in results), processes=processes)


@dataclass
class PacedResult:
    send_times: np.ndarray  # wall-clock seconds (time.time()) of each event's send, by index
    seconds: float

    @property
    def achieved_rate(self) -> float:
        return len(self.send_times) / self.seconds if self.seconds > 0 else float("nan")


def paced_send(producer: KafkaProducer, topic: str, records: list[tuple[bytes, bytes]], rate: float) -> PacedResult:
    """Send ``records`` at ``rate`` events/s, each stamped (CreateTime) with its send time, and flush (the latency
    step's warm-up; its measured load comes from ``paced``, on librdkafka in a process of its own)."""
    partition_of = KeyPartitions(producer, topic)
    send_times = np.zeros(len(records))
    total = len(records)
    start = time.time()
    sent = 0
    while sent < total:
        now = time.time()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            key, value = records[sent]
            stamp = time.time()
            producer.send(topic, value=value, key=key, partition=partition_of(key), timestamp_ms=int(stamp * 1000))
            send_times[sent] = stamp
            sent += 1
        ahead = start + sent / rate - time.time()
        if ahead > 0:
            time.sleep(ahead)
    producer.flush()
    return PacedResult(send_times=send_times, seconds=send_times[-1] - send_times[0] if total > 1 else 0.0)
