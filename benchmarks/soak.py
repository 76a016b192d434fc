"""Soak: the whole pipeline at a steady rate for a set time; events in/out, lost, duplicates, memory.

    python benchmarks/soak.py --duration 600 --rate 500

Starts its own broker (free ports, a temporary folder), the ML service, one processor and a paced producer
of unique-id events (one in 200 is bad and owed a dead letter), then compares by id what went in with what
came out. Prints a report, writes ``bench-results/soak.json``, exits 1 if anything was lost.
Not part of CI (``make soak``).
"""

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from local_kafka import LocalBroker, LocalBrokerConfig

from devstack.harness import (
    REPO_ROOT,
    Collector,
    MLServiceProcess,
    ProcessorProcess,
    SteadyProducer,
    Tally,
    fresh_topics,
    kafka_env,
    make_tally,
    train_model,
)
from devstack.processes import free_port

SERVICES = ("auth", "payment", "orders", "search", "cart", "email")


def soak(
    duration: float,
    started: float,
    processor: ProcessorProcess,
    ml: MLServiceProcess,
    producer: SteadyProducer,
    collector: Collector,
) -> list[dict[str, float]]:
    """Sample both services' RSS every 30 s until ``duration`` passed (or one of them died); the samples."""
    rss_samples = []
    while (elapsed := time.monotonic() - started) < duration:
        time.sleep(min(30.0, duration - elapsed))
        sample = {"t_s": round(time.monotonic() - started), "processor": processor.rss_mib()}
        sample["ml_service"] = ml.rss_mib()
        rss_samples.append(sample)
        print(
            f"  t={sample['t_s']}s in={producer.count_acked()} out={collector.total_verdicts()} "
            f"dlq={sum(collector.dead.values())} rss={sample}",
            flush=True,
        )
        if not (processor.alive() and ml.alive()):
            break
    return rss_samples


def write_report(
    duration: float,
    rate: float,
    output: Path,
    tally: Tally,
    rss: tuple[dict[str, float], dict[str, float], list[dict[str, float]]],
    exit_code: int,
) -> None:
    """The soak's figures to ``output`` (JSON) and one summary on stdout; ``rss``: start, end, samples."""
    report = {
        "duration_s": duration,
        "rate": rate,
        "events_in": tally.produced,
        "verdicts_out": tally.verdicts,
        "dead_lettered": tally.dead_lettered,
        "lost": tally.lost,
        "duplicates": tally.duplicates,
        "misrouted": tally.misrouted,
        "achieved_rate": round(tally.produced / duration, 1),
        "rss_mib_start": {k: round(v, 1) for k, v in rss[0].items()},
        "rss_mib_end": {k: round(v, 1) for k, v in rss[1].items()},
        "rss_samples": rss[2],
        "processor_exit": exit_code,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"\nSoak {duration:.0f}s at {rate:.0f}/s: in={tally.produced} verdicts={tally.verdicts} "
        f"dead-lettered={tally.dead_lettered} lost={tally.lost} duplicates={tally.duplicates}\n"
        f"RSS MiB start {report['rss_mib_start']} -> end {report['rss_mib_end']}; "
        f"processor exit {exit_code}; written to {output}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of steady traffic (default 600)")
    parser.add_argument("--rate", type=float, default=500, help="events per second (default 500)")
    parser.add_argument("--drain-timeout", type=float, default=120, help="seconds to wait for the last verdicts")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench-results" / "soak.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the broker's reconnect noise is not the report

    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        folder = Path(scratch)
        broker = LocalBroker(
            LocalBrokerConfig(host="127.0.0.1", port=free_port(), controller_port=free_port(), home=folder / "kafka")
        )
        print(f"Starting a broker at {broker.config.bootstrap}, training a model ...", flush=True)
        broker.start()
        ml: MLServiceProcess | None = None
        processor: ProcessorProcess | None = None
        try:
            settings = fresh_topics(broker.config.bootstrap)
            ml = MLServiceProcess(train_model(folder), folder)
            ml.start()
            processor = ProcessorProcess(
                kafka_env(settings), folder, group="soak", scorer_url=ml.url, name="processor", BATCH_MAX="2000"
            )
            processor.start()
            collector = Collector(settings)
            collector.start()
            producer = SteadyProducer(
                settings,
                rate=args.rate,
                prefix=settings.logs_topic.removeprefix("logs-"),
                services=SERVICES,
                bad_every=200,
            )
            started = time.monotonic()
            producer.start()
            collector.wait_until(lambda c: sum(c.verdicts.values()) > 0, 60, "the first verdict")
            rss_start = {"processor": processor.rss_mib(), "ml_service": ml.rss_mib()}
            print(f"Soaking for {args.duration:.0f}s at {args.rate:.0f} events/s; RSS at start {rss_start}", flush=True)
            rss_samples = soak(args.duration, started, processor, ml, producer, collector)
            rss_end = {"processor": processor.rss_mib(), "ml_service": ml.rss_mib()}
            producer.stop()
            missing = collector.wait_for(producer.produced, args.drain_timeout)
            tally = make_tally(
                f"soak {args.duration:.0f}s at {args.rate:.0f}/s",
                producer,
                collector,
                started,
                rate=args.rate,
                missing_after_drain=len(missing),
            )
            exit_code = processor.terminate()
            collector.stop()
        finally:
            for child in (processor, ml):
                if child is not None:
                    child.cleanup()
            broker.stop()

    write_report(args.duration, args.rate, args.output, tally, (rss_start, rss_end, rss_samples), exit_code)
    return 0 if tally.lost == 0 and tally.misrouted == 0 and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
