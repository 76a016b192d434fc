"""Processor throughput with and without the per-service context, on the same pre-filled topic and ML service.

    python benchmarks/processor_throughput.py --fill 30000   # 30,000 simulator events to a new topic; prints its name
    python benchmarks/processor_throughput.py --topic bench-xxxx --pairs 3

Kafka from KAFKA_BOOTSTRAP_SERVERS, the ML service from ML_SERVICE_URL (both as for the processor). Each run
reads the whole topic with a fresh consumer group through the real ``Pipeline`` (HTTP scoring, produce, commit)
and prints events/s for CONTEXT=1 (``ContextualScorer``) and CONTEXT=0 (``HttpScorer``), alternating.
"""

import argparse
import statistics
import time
import uuid

from anomaly_processor import Pipeline, Printer, ProcessorSettings, consumer_overrides, producer_overrides
from anomaly_processor.app import make_scorer, tune_garbage_collector

from eventbus import KafkaSettings, ensure_topics, make_consumer, make_producer
from streaming_detector.profiles import generate_normal_events


def topic_settings(topic: str) -> KafkaSettings:
    base = KafkaSettings()
    return base.model_copy(update={"logs_topic": topic, "predictions_topic": f"{topic}-p", "dlq_topic": f"{topic}-d"})


def fill(count: int) -> str:
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    kafka = topic_settings(topic)
    ensure_topics(kafka)
    producer = make_producer(kafka, linger_ms=50, batch_size=1 << 20)
    for event in generate_normal_events(count, seed=1):
        producer.send(topic, event.to_json(), key=event.key())
    producer.flush()
    producer.close()
    return topic


def run(topic: str, count: int, context: bool) -> float:
    """Events/s of one pass over ``topic`` (the first batch, connection and group join excluded)."""
    kafka = topic_settings(topic)
    settings = ProcessorSettings(print_mode="quiet", context=context)
    scorer = make_scorer(settings)
    consumer = make_consumer(kafka, group_id=f"bench-{uuid.uuid4().hex[:6]}", **consumer_overrides(settings))
    producer = make_producer(kafka, **producer_overrides())
    pipeline = Pipeline(consumer, producer, scorer, kafka=kafka, settings=settings, printer=Printer("quiet"))
    done, first, started = 0, 0, 0.0
    try:
        while done < count:
            handled = pipeline.run_once()
            if handled and not first:
                first, started = handled, time.perf_counter()
            done += handled
        return (done - first) / (time.perf_counter() - started)
    finally:
        consumer.close(autocommit=False)
        producer.close()
        scorer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, metavar="N", help="write N events to a new topic and print its name")
    parser.add_argument("--topic", help="the pre-filled topic to read")
    parser.add_argument("--count", type=int, default=30_000, help="events in the topic")
    parser.add_argument("--pairs", type=int, default=3, help="CONTEXT=1 / CONTEXT=0 runs, alternating")
    args = parser.parse_args()
    if args.fill:
        print(fill(args.fill))
        return
    if not args.topic:
        parser.error("--topic or --fill is required")
    tune_garbage_collector()  # as python main.py does
    rates: dict[bool, list[float]] = {True: [], False: []}
    for pair in range(args.pairs):
        for context in (True, False) if pair % 2 == 0 else (False, True):
            rate = run(args.topic, args.count, context)
            rates[context].append(rate)
            print(f"CONTEXT={int(context)}: {rate:,.0f} events/s", flush=True)
    with_context, without = statistics.median(rates[True]), statistics.median(rates[False])
    # Runs of a pair are back to back: their ratio is less at the mercy of other load on the host than the medians.
    ratio = statistics.median(c / p for c, p in zip(rates[True], rates[False], strict=True))
    print(f"median: context {with_context:,.0f} / point {without:,.0f} events/s; median ratio of pairs {ratio:.2f}")


if __name__ == "__main__":
    main()
