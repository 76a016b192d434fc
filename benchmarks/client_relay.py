"""The Kafka client floor of the processor's loop, per client: records relayed through ``eventbus``'s stream ports.

``python benchmarks/client_relay.py --bootstrap host:port [--records 200000] [--client confluent,kafka-python]``

Preloads ``--records`` small JSON events into a fresh topic, then, for each client, in this one process: poll a
batch (``BATCH_MAX``), produce every record to a fresh output topic, wait for the acknowledgements, commit
asynchronously; no parsing. Prints records/s (first batch to last acknowledgement) and the process's CPU time
(librdkafka's threads included) per record. What the processor cannot beat whatever it does per event.
"""

import argparse
import resource
import time
import uuid

from anomaly_processor import ProcessorSettings, consumer_overrides, producer_overrides
from kafka.structs import OffsetAndMetadata, TopicPartition

from eventbus import KafkaSettings, SendFuture, ensure_topics, make_producer, make_stream_consumer, make_stream_producer

EVENT = b'{"timestamp": 1700000000.0, "service": "auth", "latency_ms": 201.5, "error_rate": 0.02}'
SERVICES = (b"auth", b"payment", b"orders")


def fresh_topics(bootstrap: str) -> KafkaSettings:
    """Settings naming topics of this run alone (created by ``ensure_topics``): input ``logs_topic``, output
    ``predictions_topic``."""
    suffix = uuid.uuid4().hex[:8]
    names = ("logs", "predictions", "dlq", "incidents", "repartition", "state")
    topics = {f"{n}_topic": f"relay-{n}-{suffix}" for n in names}
    return KafkaSettings(kafka_bootstrap_servers=bootstrap, **topics)  # type: ignore[arg-type]


def relay(kafka: KafkaSettings, records: int, client: str) -> tuple[float, float]:
    """(records/s, CPU µs a record) of relaying ``kafka.logs_topic`` to ``kafka.predictions_topic`` with ``client``."""
    kafka = kafka.model_copy(update={"kafka_client": client})
    settings = ProcessorSettings()
    consumer = make_stream_consumer(kafka, group_id=f"relay-{uuid.uuid4().hex[:8]}", **consumer_overrides(settings))
    producer = make_stream_producer(kafka, **producer_overrides())
    consumer.subscribe([kafka.logs_topic])
    done, started = 0, 0.0
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        while done < records:
            polled = consumer.poll(timeout_ms=500, max_records=settings.batch_max)
            if not polled:
                continue
            started = started or time.perf_counter()
            sent: list[SendFuture] = []
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, batch in polled.items():
                sent.extend(producer.send(kafka.predictions_topic, value=r.value, key=r.key) for r in batch)
                offsets[tp] = OffsetAndMetadata(batch[-1].offset + 1, "", -1)
                done += len(batch)
            producer.flush(60)
            if not all(future.succeeded() for future in sent):
                raise RuntimeError("a relayed record was not acknowledged")
            consumer.commit_async(offsets)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=5)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return done / elapsed, cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="the broker to use (host:port)")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--client", default="confluent,kafka-python", help="clients to measure, comma-separated")
    args = parser.parse_args()
    kafka = fresh_topics(args.bootstrap)
    ensure_topics(kafka)
    preload = make_producer(kafka, linger_ms=20, batch_size=1024 * 1024)
    for i in range(args.records):
        preload.send(kafka.logs_topic, value=EVENT, key=SERVICES[i % len(SERVICES)])
    preload.flush()
    preload.close()
    for client in (c.strip() for c in args.client.split(",") if c.strip()):
        rate, cpu_us = relay(kafka, args.records, client)
        print(f"{client:>12}: {args.records:,} records relayed at {rate:,.0f}/s, {cpu_us:.1f} µs CPU a record")


if __name__ == "__main__":
    main()
