"""The latency step's load and its reader: a paced librdkafka producer and a librdkafka reader of the verdicts,
each in its own process, so that neither competes with the other (or with the benchmark) for the interpreter.

The producer sends event ``i`` at ``start + i / rate`` (stamped with its actual send time, which is also the
record's CreateTime) with librdkafka's default linger, 5 ms, counted in the latency: records sent one by one at
thousands a second cost the broker more CPU than two cores have beside the processor (docs/tuning.md). The
reader reads ``predictions`` from the offsets it had when it was ready, with a short fetch wait, and stamps each
verdict with the wall clock as it is read. Both keep the garbage collector off: what they keep (floats, ints,
the pre-serialised records) has no cycles.
"""

import gc
import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.pipeline_bench import events
from eventbus import KafkaSettings

READ_WAIT_S = 0.05  # one wait of the reader for a first verdict; it returns as soon as one arrives
FETCH_WAIT_MS = 5  # the broker answers an empty fetch this soon: a verdict waits at most this for its fetch


@dataclass
class PacedLoad:
    send_times: np.ndarray  # wall-clock seconds (time.time()) of each event's send, by index
    seconds: float
    behind_s: float  # the most an event was sent after its due time: the pacer's own lag

    @property
    def achieved_rate(self) -> float:
        return len(self.send_times) / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Verdicts:
    indexes: np.ndarray  # event indexes that got a verdict
    read_at: np.ndarray  # wall clock when each was read
    created_at: np.ndarray  # its CreateTime (the processor's produce call), seconds


def producer_configs(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """Sends with librdkafka's default linger, partitions keys as the processor and kafka-python do (murmur2)."""
    return {
        **settings.librdkafka_configs(),
        "client.id": client_id,
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        "acks": "all",
    }


def _pace(
    fields: dict[str, Any], topic: str, prefix: str, count: int, rate: float, ready: Any, go: Any, conn: Any
) -> None:
    """In its own process: serialise the events, wait for ``go``, send them at ``rate``; the send times back."""
    gc.disable()
    settings = KafkaSettings(**fields)
    records = events.serialise(events.event_pool(), prefix, 0, count)
    producer = Producer(producer_configs(settings, "bench-pacer"))
    producer.list_topics(topic, timeout=30)  # metadata before the clock runs
    send_times = np.zeros(count)
    ready.set()
    go.wait()
    produce, poll, now = producer.produce, producer.poll, time.time
    start = now()
    behind = 0.0
    sent = 0
    while sent < count:
        late = now() - (start + sent / rate)  # the next event's due time
        behind = max(behind, late)
        due = min(count, int((now() - start) * rate) + 1)
        while sent < due:
            key, value = records[sent]
            stamp = now()
            try:
                produce(topic, value, key, timestamp=int(stamp * 1000))
            except BufferError:  # the local queue is full: let librdkafka send, then try again
                poll(0.001)
                continue
            send_times[sent] = stamp
            sent += 1
        poll(0)
        ahead = start + sent / rate - now()
        if ahead > 0:
            time.sleep(ahead)
    producer.flush(30)
    conn.send((send_times.tobytes(), behind))
    conn.close()


def _read(
    fields: dict[str, Any], topic: str, prefix: str, expected: int, deadline: float, ready: Any, conn: Any
) -> None:
    """In its own process: when each verdict whose event_id starts with ``prefix`` is read, and its CreateTime."""
    gc.disable()
    settings = KafkaSettings(**fields)
    consumer = Consumer(
        {
            **settings.librdkafka_configs(),
            "group.id": "unused",  # assign-only: never joins it
            "client.id": "bench-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MS,
            "fetch.error.backoff.ms": FETCH_WAIT_MS,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = sorted(metadata.topics[topic].partitions)
    # From each partition's end as of now, explicitly: no verdict produced from here on is missed.
    ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions]
    consumer.assign([TopicPartition(topic, p, end) for p, end in zip(partitions, ends, strict=True)])
    ready.set()
    indexes: list[int] = []
    read_at: list[float] = []
    created: list[float] = []
    cut = len(prefix)
    marker = prefix.encode()
    while len(indexes) < expected and time.time() < deadline:
        first = consumer.poll(READ_WAIT_S)
        now = time.time()
        if first is None:
            continue
        for message in [first, *consumer.consume(10_000, 0)]:
            value = message.value()
            if message.error() is not None or value is None or marker not in value:
                continue
            event_id = orjson.loads(value)["event_id"]
            if event_id.startswith(prefix):
                indexes.append(int(event_id[cut:]))
                read_at.append(now)
                created.append(message.timestamp()[1] / 1000.0)
    consumer.close()
    conn.send((np.array(indexes, dtype=np.int64).tobytes(), np.array(read_at).tobytes(), np.array(created).tobytes()))
    conn.close()


class LatencyProbe:
    """The pacer and the reader of one latency run; ``start`` readies both, ``run`` offers the load and waits.
    ``read=False``: the pacer alone (the original design's verdicts are lines on its stdout, not records)."""

    def __init__(
        self, settings: KafkaSettings, prefix: str, count: int, rate: float, seconds: float, read: bool = True
    ) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs Kafka client threads
        self._go = context.Event()
        self._ready = [context.Event()]
        self._pacer_in, pacer_out = context.Pipe(duplex=False)
        fields = settings.model_dump()
        self._processes = [
            context.Process(
                target=_pace,
                args=(fields, settings.logs_topic, prefix, count, rate, self._ready[0], self._go, pacer_out),
                name="bench-pacer",
            )
        ]
        self._reader_in = None
        if read:
            self._ready.append(context.Event())
            self._reader_in, reader_out = context.Pipe(duplex=False)
            deadline = time.time() + seconds + 120  # spawn and serialising included
            self._processes.append(
                context.Process(
                    target=_read,
                    args=(fields, settings.predictions_topic, prefix, count, deadline, self._ready[1], reader_out),
                    name="bench-reader",
                )
            )

    def start(self, timeout_s: float = 120.0) -> bool:
        for process in self._processes:
            process.start()
        return all(ready.wait(timeout_s) for ready in self._ready)

    def run(self) -> tuple[PacedLoad, Verdicts | None]:
        """Offer the load; once it is sent, wait for the reader (which stops at its deadline at the latest)."""
        self._go.set()
        send_bytes, behind = self._pacer_in.recv()
        send_times = np.frombuffer(send_bytes)
        load = PacedLoad(send_times, float(send_times[-1] - send_times[0]) if len(send_times) > 1 else 0.0, behind)
        if self._reader_in is None:
            return load, None
        index_bytes, read_bytes, created_bytes = self._reader_in.recv()
        verdicts = Verdicts(
            np.frombuffer(index_bytes, dtype=np.int64), np.frombuffer(read_bytes), np.frombuffer(created_bytes)
        )
        return load, verdicts

    def close(self) -> None:
        for process in self._processes:
            if process.pid is None:  # never started
                continue
            if process.is_alive():
                process.terminate()
            process.join()
