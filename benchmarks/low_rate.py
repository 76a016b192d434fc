"""One service at a low rate through the processor as ``make up`` runs it: each event's time from sent to verdict.

``python benchmarks/low_rate.py --bootstrap host:port --model path/to/model.joblib [--client confluent] [--rate 5]``

Starts the ML service and ``processor/main.py`` (``PROCESSOR_WORKERS=auto``, ``PRINT_MODE=events``) on fresh
topics of the given broker, waits for the workers to join, sends ``--events`` events of one service (keyed by
it) at ``--rate`` per second, each flushed at once, and reads the verdicts as they come: p50, p90 and max of
sent → verdict. Batching must not hold a lone event back; this is where that shows. Stops what it started.
"""

import argparse
import statistics
import threading
import time
import uuid
from pathlib import Path

import orjson

from devstack.harness import MLServiceProcess, ProcessorProcess, kafka_env
from eventbus import KafkaSettings, ensure_topics, make_consumer, make_producer

JOIN_WAIT_S = 15.0  # the workers join the group and get their partitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="the broker to use (host:port)")
    parser.add_argument("--model", type=Path, required=True, help="a model saved by make train")
    parser.add_argument("--client", default="auto", help="KAFKA_CLIENT of the processor")
    parser.add_argument("--rate", type=float, default=5.0, help="events per second")
    parser.add_argument("--events", type=int, default=60)
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:6]
    names = ("logs", "predictions", "dlq", "incidents", "repartition", "state")
    topics = {f"{n}_topic": f"lowrate-{n}-{suffix}" for n in names}
    kafka = KafkaSettings(kafka_bootstrap_servers=args.bootstrap, **topics)  # type: ignore[arg-type]
    ensure_topics(kafka)
    folder = Path(f"bench-results/low-rate-{suffix}")
    folder.mkdir(parents=True, exist_ok=True)
    ml = MLServiceProcess(args.model, folder)
    env = {**kafka_env(kafka), "KAFKA_CLIENT": args.client, "PROCESSOR_WORKERS": "auto"}
    processor = ProcessorProcess(env, folder, group=f"lowrate-{suffix}", scorer_url=ml.url, name="processor",
                                 PRINT_MODE="events")  # fmt: skip
    arrived: dict[str, float] = {}
    stop = threading.Event()
    reader = make_consumer(kafka, kafka.predictions_topic, group_id=None)

    def read() -> None:
        while not stop.is_set():
            for records in reader.poll(timeout_ms=100).values():
                for record in records:
                    arrived[orjson.loads(record.value)["event_id"]] = time.time()

    thread = threading.Thread(target=read, daemon=True)
    try:
        ml.start()
        processor.start()
        thread.start()
        time.sleep(JOIN_WAIT_S)
        producer = make_producer(kafka, linger_ms=0)
        sent: dict[str, float] = {}
        for i in range(args.events):
            event_id = f"low-rate-{i}"
            event = {"timestamp": time.time(), "service": "checkout", "latency_ms": 200.0 + i % 7,
                     "error_rate": 0.01, "event_id": event_id}  # fmt: skip
            sent[event_id] = time.time()
            producer.send(kafka.logs_topic, key=b"checkout", value=orjson.dumps(event))
            producer.flush()
            time.sleep(1 / args.rate)
        time.sleep(5)
        producer.close()
    finally:
        stop.set()
        thread.join(timeout=5)
        reader.close()
        processor.cleanup()
        ml.cleanup()
    ms = sorted((arrived[e] - at) * 1000 for e, at in sent.items() if e in arrived)
    lines = processor.log_text().count('"service":"checkout"')
    print(
        f"{args.client}: {len(ms)}/{len(sent)} verdicts, {lines} lines printed; sent -> verdict ms: "
        f"p50 {statistics.median(ms):.0f}, p90 {ms[max(0, int(0.9 * len(ms)) - 1)]:.0f}, max {ms[-1]:.0f}"
    )


if __name__ == "__main__":
    main()
