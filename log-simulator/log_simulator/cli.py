"""``python log-simulator/main.py [flags]``: send labelled log events (or replay a NAB file) to Kafka.

Every flag overrides the ``SIMULATOR_*`` environment variable of the same name (``log_simulator.settings``);
Kafka's address and topic come from ``KAFKA_BOOTSTRAP_SERVERS`` and ``LOGS_TOPIC``. Output on stdout is for
the user (``Sent: {...}`` lines at <= 20 events/s, else progress lines, then one summary line);
diagnostics go to stderr. Exit status: 0 when every event was delivered (also after Ctrl-C or SIGTERM),
1 when some were not, 2 for bad flags or an unusable replay file, 3 when Kafka stayed unreachable.
"""

import argparse
import logging
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kafka.errors import KafkaError
from pydantic import ValidationError

from eventbus import BrokerUnavailableError, KafkaSettings, LogEvent, ensure_topics, make_producer, wait_for_broker
from log_simulator.errors import ConfigurationError, SimulatorError
from log_simulator.generator import TrafficGenerator, parse_services
from log_simulator.pacing import RatePacer, SchedulePacer
from log_simulator.replay import load_replay
from log_simulator.scenarios import resolve_kinds
from log_simulator.sender import PER_EVENT_OUTPUT_MAX_RATE, Reporter, send_events
from log_simulator.settings import SimulatorSettings
from streaming_detector.profiles import ORIGINAL, REALISTIC

log = logging.getLogger("log_simulator")

_SIMULATION_ONLY = ("rate", "services", "anomaly_rate", "anomalies", "original_distributions")
_REPLAY_ONLY = ("labels", "speed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="log-simulator",
        description="Send labelled service log events to Kafka, or replay a Numenta Anomaly Benchmark CSV.",
        epilog="Each flag overrides the environment variable SIMULATOR_<FLAG> (e.g. SIMULATOR_RATE).",
    )
    # Defaults are None so that only flags actually given override the environment.
    add = parser.add_argument
    add("--rate", type=float, help="events per second (default 10; 0 = as fast as possible)")
    add("--count", type=int, help="stop after this many events (default: run until Ctrl-C)")
    add("--duration", type=float, help="stop after this many seconds")
    add("--services", help="comma-separated; 'payment:350' sets a median latency in ms (default auth,payment,orders)")
    add("--seed", type=int, help="seed for reproducible events and ids")
    add("--anomaly-rate", type=float, help="fraction of events that start an injected anomaly (default 0.01)")
    add("--anomalies", help="kinds to inject: spike (latency_spike), error_burst, level_shift (default: all)")
    add(
        "--original-distributions",
        action="store_true",
        default=None,
        help="the original design's latency N(200, 50) and error rate U[0, 1]",
    )
    add("--replay", type=Path, metavar="FILE.csv", help="replay a NAB CSV (timestamp,value) instead of simulating")
    add("--labels", type=Path, metavar="WINDOWS.json", help="NAB combined_windows.json to label replayed rows")
    add("--speed", type=float, help="replay speed over real time (default 300: 5-minute rows at 1/s; 0 = max)")
    add("--quiet", action="store_true", default=None, help="print only the final summary")
    add("--progress-interval", type=float, help="seconds between progress lines at high rates (default 2)")
    add("--connect-timeout", type=float, help="seconds to retry an unreachable Kafka (default 60; 0 = forever)")
    return parser


def load_settings(argv: list[str] | None) -> tuple[SimulatorSettings, set[str]]:
    """Settings from the environment with the given flags on top, and the names of the flags given."""
    args = build_parser().parse_args(argv)
    given = {name: value for name, value in vars(args).items() if value is not None}
    try:
        settings = SimulatorSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(problems) from None
    return settings, set(given)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its connection chatter is not news to the user
    # At full speed the send loop keeps the GIL busy and kafka-python warns that its I/O thread waited: expected.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    try:
        settings, given = load_settings(argv)
        kafka = KafkaSettings()
        plan = _plan(settings, given)
    except SimulatorError as exc:
        print(f"log-simulator: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()
    _handle_stop_signals(stop)
    try:
        producer = connect(kafka, settings.connect_timeout, stop)
    except BrokerUnavailableError as exc:
        print(f"log-simulator: {exc}. Is Kafka running? (python kafka-docker/main.py up)", file=sys.stderr)
        return 3
    if producer is None:
        print("log-simulator: stopped before Kafka answered; nothing was sent")
        return 0

    if not settings.quiet:
        print(f"Sending {plan.description} to topic {kafka.logs_topic} at {kafka.kafka_bootstrap_servers}", flush=True)
    reporter = Reporter(
        per_event=plan.per_event,
        quiet=settings.quiet,
        progress_interval_s=settings.progress_interval,
        out=sys.stdout,
        target_rate=plan.rate or None,
    )
    try:
        summary = send_events(
            producer,
            kafka.logs_topic,
            plan.events,
            plan.make_pacer(_stoppable_sleep(stop)),
            reporter,
            stop=stop,
            count=settings.count,
            duration_s=settings.duration,
            anomalies_started=plan.anomalies_started,
            flush_timeout_s=settings.flush_timeout,
        )
    finally:
        producer.close(timeout=5)
    summary.bad_rows = plan.bad_rows
    reporter.final(summary)
    return 1 if summary.failed or summary.unconfirmed else 0


@dataclass
class _Plan:
    """What to send and at what pace, decided from the settings before touching Kafka."""

    description: str
    events: Iterator[LogEvent]
    per_event: bool
    rate: float = 0.0  # simulation: events/s
    offsets: list[float] | None = None  # replay: when each row is due, at speed 1
    speed: float = 0.0
    anomalies_started: Counter[str] | None = None
    bad_rows: int = 0

    def make_pacer(self, sleep: Any) -> RatePacer | SchedulePacer:
        if self.offsets is None:
            return RatePacer(self.rate, sleep=sleep)
        return SchedulePacer(self.offsets, self.speed, sleep=sleep)


def _plan(settings: SimulatorSettings, given: set[str]) -> _Plan:
    if settings.replay is not None:
        misplaced = sorted(given & set(_SIMULATION_ONLY))
        if misplaced:
            flags = ", ".join("--" + name.replace("_", "-") for name in misplaced)
            raise ConfigurationError(f"not used with --replay: {flags} (--speed sets a replay's pace)")
        series = load_replay(settings.replay, settings.labels)
        offsets = series.offsets_s()
        gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False) if b > a]
        replay_rate = settings.speed / statistics.median(gaps) if settings.speed and gaps else float("inf")
        pace = "as fast as possible" if settings.speed == 0 else f"at {settings.speed:g}x real time"
        return _Plan(
            f"{len(series.rows)} rows of {settings.replay.name} as service {series.service!r} {pace}",
            series.events(settings.seed),
            offsets=offsets,
            speed=settings.speed,
            per_event=replay_rate <= PER_EVENT_OUTPUT_MAX_RATE,
            bad_rows=len(series.bad_rows),
        )
    misplaced = sorted(given & set(_REPLAY_ONLY))
    if misplaced:
        flags = ", ".join("--" + name.replace("_", "-") for name in misplaced)
        raise ConfigurationError(f"only used with --replay FILE.csv: {flags}")
    profile = ORIGINAL if settings.original_distributions else REALISTIC
    generator = TrafficGenerator(
        parse_services(settings.services, profile),
        seed=settings.seed,
        anomaly_rate=settings.anomaly_rate,
        kinds=resolve_kinds(settings.anomalies.split(",")),
        profile=profile,
    )
    pace = "as fast as possible" if settings.rate == 0 else f"at {settings.rate:g} events/s"
    kinds = ",".join(generator.kinds) if generator.kinds and settings.anomaly_rate > 0 else "none"
    return _Plan(
        f"events of {','.join(s.name for s in generator.services)} {pace}, anomaly rate {settings.anomaly_rate:g} "
        f"({kinds}){', original distributions' if settings.original_distributions else ''}",
        generator.events(),
        rate=settings.rate,
        per_event=0 < settings.rate <= PER_EVENT_OUTPUT_MAX_RATE,
        anomalies_started=generator.stats.anomalies_started,
    )


def connect(kafka: KafkaSettings, timeout_s: float, stop: threading.Event) -> Any:
    """A producer once Kafka answers (topics ensured), retrying with backoff; None if ``stop`` was set first."""
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # it logs every refused connection; we report once per attempt
    try:
        if not _wait_for_kafka(kafka, timeout_s, stop):
            return None
    finally:
        kafka_log.setLevel(level)
    return make_producer(kafka)


def _wait_for_kafka(kafka: KafkaSettings, timeout_s: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    delay = 1.0
    attempt = 0
    while True:
        attempt += 1
        try:
            wait_for_broker(kafka, timeout_s=3.0)
            ensure_topics(kafka)
            return True
        except (BrokerUnavailableError, KafkaError, OSError) as exc:
            if deadline is not None and time.monotonic() + delay > deadline:
                raise BrokerUnavailableError(
                    f"Kafka at {kafka.kafka_bootstrap_servers} did not answer within {timeout_s:g}s"
                ) from None
            log.warning(
                "Kafka at %s is not reachable (attempt %d: %s); retrying in %.0fs (Ctrl-C to give up)",
                kafka.kafka_bootstrap_servers,
                attempt,
                exc,
                delay,
            )
        if stop.wait(delay):
            return False
        delay = min(delay * 2, 15.0)


def _stoppable_sleep(stop: threading.Event) -> Any:
    """A sleep that ends early on a stop request, and at least every 0.25 s so ``--duration`` is kept."""

    def sleep(seconds: float) -> None:
        if seconds > 0:
            stop.wait(min(seconds, 0.25))

    return sleep


def _handle_stop_signals(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: stop sending, flush, summarize. A second one: leave at once."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise SystemExit(130)
        log.info("%s received: stopping after flushing what is in flight", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
