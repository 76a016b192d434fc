"""``python -m pipeline_bench.relay``: the processor's Kafka path with no work in it, for the latency floor.

It consumes ``LOGS_TOPIC`` in group ``RELAY_GROUP`` with the processor's consumer options, produces every
record as it is to ``PREDICTIONS_TOPIC`` with the processor's producer options, flushes (waits for the acks)
and commits, batch after batch, until SIGTERM. Measured with the same paced load and verdict recorder as the
processor, it tells how much of the event-to-verdict latency two Kafka hops through one kafka-python process
cost on this machine, before any decoding, scoring or printing.
"""

import os
import signal
import threading

from anomaly_processor import ProcessorSettings, consumer_overrides, producer_overrides

from eventbus import KafkaSettings, make_consumer, make_producer


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    kafka = KafkaSettings()
    processor = ProcessorSettings()
    consumer = make_consumer(
        kafka, kafka.logs_topic, group_id=os.environ["RELAY_GROUP"], **consumer_overrides(processor)
    )
    producer = make_producer(kafka, **producer_overrides())
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=100, max_records=processor.batch_max)
            if not polled:
                continue
            for records in polled.values():
                for record in records:
                    producer.send(kafka.predictions_topic, value=record.value, key=record.key)
            producer.flush()
            consumer.commit_async()
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=5)


if __name__ == "__main__":
    main()
