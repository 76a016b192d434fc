"""The librdkafka relay floor: consume ``PEER_IN`` and produce every record as it is to ``PEER_OUT``.

Run by ``.venv-peers/bin/python`` (confluent-kafka only, nothing of the project): no parsing, no scoring,
the most a Python process on librdkafka moves through two Kafka hops here. Consumes in batches, produces
with acks=all, commits each batch (asynchronously, as a processor that keeps going would), until SIGTERM.
"""

import os
import signal

from confluent_kafka import Consumer, Producer


def main() -> None:
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.clear())
    bootstrap, source, target = os.environ["PEER_BOOTSTRAP"], os.environ["PEER_IN"], os.environ["PEER_OUT"]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": os.environ["PEER_GROUP"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": True})
    consumer.subscribe([source])
    try:
        while running:
            batch = consumer.consume(num_messages=10_000, timeout=0.1)
            if not batch:
                producer.poll(0)
                continue
            for message in batch:
                if message.error() is None:
                    while True:
                        try:
                            producer.produce(target, message.value(), message.key())
                            break
                        except BufferError:  # the local queue is full: serve delivery reports, then retry
                            producer.poll(0.05)
            producer.poll(0)
            consumer.commit(asynchronous=True)
    finally:
        producer.flush(10)
        consumer.close()


if __name__ == "__main__":
    main()
