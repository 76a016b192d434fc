"""``python -m pipeline_bench.relay``: the processor's Kafka path with no work in it, for the latency floor.

It consumes ``LOGS_TOPIC`` in group ``RELAY_GROUP`` through the processor's client ports (``KAFKA_CLIENT``, the
processor's consumer and producer options), produces every record as it is to ``PREDICTIONS_TOPIC``, waits for
the acks and commits, batch after batch, until SIGTERM. Measured with the same paced load and verdict reader as
the processor, it tells how much of the event-to-verdict latency two Kafka hops through one process cost on
this machine, before any decoding, scoring or printing.
"""

import os
import signal
import threading

from anomaly_processor import ProcessorSettings, consumer_overrides, producer_overrides
from kafka.structs import OffsetAndMetadata, TopicPartition

from eventbus import KafkaSettings, make_stream_consumer, make_stream_producer


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    kafka = KafkaSettings()
    processor = ProcessorSettings()
    consumer = make_stream_consumer(kafka, group_id=os.environ["RELAY_GROUP"], **consumer_overrides(processor))
    consumer.subscribe([kafka.logs_topic])
    producer = make_stream_producer(kafka, **producer_overrides())
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=100, max_records=processor.batch_max)
            if not polled:
                continue
            offsets = {}
            for partition, records in polled.items():
                for record in records:
                    producer.send(kafka.predictions_topic, value=record.value, key=record.key)
                offsets[TopicPartition(partition.topic, partition.partition)] = OffsetAndMetadata(
                    records[-1].offset + 1, "", -1
                )
            producer.flush()
            consumer.commit_async(offsets)
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=5)


if __name__ == "__main__":
    main()
