"""The processor as a program: settings, Kafka clients, the scorer, the printer and metrics around a ``Pipeline``.

The scorer is ``ContextualScorer`` (per-service context, ``CONTEXT=1``, the default) or the plain
``HttpScorer`` (``CONTEXT=0``); ``/metrics`` and ``/health`` are served on ``PROCESSOR_METRICS_PORT``.

SIGINT or SIGTERM finishes the batch in hand (produce, print, commit), closes the clients and exits 0;
a second signal stops at once (exit 130), leaving the batch in hand uncommitted for the next run.
"""

import gc
import logging
import signal
import sys
import threading
from types import FrameType

from kafka.errors import KafkaError
from pydantic import ValidationError

from anomaly_processor.alerting import make_notifier
from anomaly_processor.errors import ScoringConfigError
from anomaly_processor.metrics import MetricsServer, ProcessorMetrics
from anomaly_processor.ml_client import HttpScorer, Scorer
from anomaly_processor.output import Printer
from anomaly_processor.pipeline import Pipeline, consumer_overrides, producer_overrides
from anomaly_processor.retry import Backoff, retry_after
from anomaly_processor.settings import ProcessorSettings
from anomaly_processor.workers import WORKER_FLAG, Supervisor, watch_parent
from eventbus import (
    BrokerRefusedError,
    BrokerUnavailableError,
    ConsumerPort,
    KafkaSettings,
    ProducerPort,
    ensure_topics,
    make_stream_consumer,
    make_stream_producer,
    stream_client,
    wait_for_broker,
)
from streaming_detector.scorer import DEFAULT_CACHE_EVENTS, ContextualScorer

log = logging.getLogger("anomaly_processor")

BROKER_PROBE_TIMEOUT_S = 5.0
# Each batch allocates tens of thousands of short-lived containers (records, events, verdicts, features): with
# CPython's default threshold (700) the collector runs hundreds of times per batch, rescanning what lives on.
# Raising it halves the time a batch spends collecting (docs/tuning.md).
GC_GEN0_THRESHOLD = 50_000


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    worker: int | None = None
    if len(args) == 2 and args[0] == WORKER_FLAG and args[1].isdigit():
        worker, args = int(args[1]), []
    if args:
        print(usage())
        return 0 if args[0] in ("-h", "--help") else 2
    try:
        settings = ProcessorSettings()
        kafka = KafkaSettings()
    except ValidationError as exc:
        print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python narrates every connection at INFO; its warnings are what matters unless debugging.
    logging.getLogger("kafka").setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
    if settings.batch_timings:  # asked for: shown whatever LOG_LEVEL
        logging.getLogger("anomaly_processor.timings").setLevel(logging.INFO)
    workers = settings.worker_count(kafka.logs_partitions)
    if worker is None and workers > 1:
        return Supervisor(settings, workers).run()
    printer = Printer(
        settings.print_mode,
        summary_interval_s=settings.summary_interval_s,
        auto_rate=settings.auto_summary_rate,
        label=f"worker {worker}" if worker is not None else "",
    )
    stop = threading.Event()
    install_signal_handlers(stop)
    if worker is not None:
        watch_parent(stop)
    tune_garbage_collector()
    metrics = ProcessorMetrics()
    server: MetricsServer | None = None
    if settings.processor_metrics_port:
        where = f"{settings.processor_metrics_host}:{settings.processor_metrics_port}"
        try:
            server = MetricsServer(metrics, settings.processor_metrics_host, settings.processor_metrics_port)
            printer.notice(f"Metrics on http://{where}/metrics, health on /health")
        except OSError as exc:  # e.g. a second processor on this host: processing matters more than its metrics
            log.warning("cannot serve metrics on %s (%s): running without them", where, exc.strerror or exc)
            printer.notice(f"Metrics NOT served: {where} unavailable; set PROCESSOR_METRICS_PORT (0 disables)")
    scorer = make_scorer(settings)
    try:
        return run(settings, kafka, scorer, printer, stop, metrics=metrics)
    except KeyboardInterrupt:
        printer.notice("Stopped at once (second signal): the batch in hand was not committed and will be redone.")
        return 130
    finally:
        scorer.close()
        if server is not None:
            server.close()


def make_scorer(settings: ProcessorSettings) -> HttpScorer | ContextualScorer:
    """The ML service's HTTP scorer, wrapped in the per-service context unless CONTEXT=0."""
    api_key = settings.ml_scoring_api_key.get_secret_value() if settings.ml_scoring_api_key else None
    http = HttpScorer(
        settings.ml_service_url, api_key=api_key, timeout_s=settings.ml_timeout_s, max_items=settings.ml_batch_cap
    )
    if not settings.context:
        return http
    # The cache holds the batch in hand (retried, bisected) and the one before (redelivered after a failed commit).
    # No cool-down: every alert is marked, and the pipeline groups a service's alerts into incidents.
    return ContextualScorer(
        http,
        cache_events=max(DEFAULT_CACHE_EVENTS, 2 * settings.batch_max),
        cooldown=False,
        sensitivity=settings.detector_sensitivity(),
    )


def tune_garbage_collector() -> None:
    """Collect less often, and never rescan what was loaded at startup (modules, schemas, the detector)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def usage() -> str:
    """What ``python main.py --help`` prints: the program takes no arguments, only environment variables."""
    lines = [
        "usage: python main.py",
        "",
        "Consumes LOGS_TOPIC, scores each event with the ML service, produces verdicts to PREDICTIONS_TOPIC",
        "and bad messages to DLQ_TOPIC, committing offsets only once their records are acknowledged.",
        "SIGINT/SIGTERM finish the batch in hand and exit 0; a second signal exits at once.",
        "PROCESSOR_WORKERS=N runs N such processes in the group, forked and supervised by this one",
        f"(each runs as 'main.py {WORKER_FLAG} K' would; one that fails stops them all).",
        "",
        "Environment:",
    ]
    for settings_class in (ProcessorSettings, KafkaSettings):
        for name, field in settings_class.model_fields.items():
            default = "" if field.default is None else f" (default: {field.default})"
            lines.append(f"  {name.upper():<26}{field.description}{default}")
    return "\n".join(lines)


def run(
    settings: ProcessorSettings,
    kafka: KafkaSettings,
    scorer: Scorer,
    printer: Printer,
    stop: threading.Event,
    *,
    scorer_name: str | None = None,
    metrics: ProcessorMetrics | None = None,
) -> int:
    """Connect (retrying), process until ``stop`` is set, close; the exit code. Any ``Scorer`` fits here."""
    remote = scorer if isinstance(scorer, HttpScorer | ContextualScorer) else None
    name = scorer_name or (remote.base_url if remote else type(scorer).__name__)
    try:
        clients = connect(settings, kafka, printer, stop)
    except BrokerRefusedError as exc:  # credentials or TLS: waiting cannot fix it
        print(f"processor: {exc}", file=sys.stderr, flush=True)
        return 3
    if clients is None:
        return 0
    consumer, producer = clients
    restorer: ConsumerPort | None = None
    pipeline: Pipeline | None = None
    notifier = make_notifier(
        alertmanager_url=settings.alertmanager_url,
        webhook_url=settings.incident_webhook_url,
        dashboard_url=settings.dashboard_url,
        refresh_s=settings.alert_refresh_s,
        metrics=metrics,
        backoff_initial_s=settings.retry_backoff_initial_s,
        backoff_max_s=settings.retry_backoff_max_s,
    )
    try:
        restorer = make_restorer(settings, kafka, scorer)
        pipeline = Pipeline(
            consumer,
            producer,
            scorer,
            kafka=kafka,
            settings=settings,
            printer=printer,
            stop=stop,
            scorer_name=name,
            metrics=metrics,
            restorer=restorer,
            notify=notifier.publish if notifier is not None else None,
        )
        printer.notice(
            f"Processing {kafka.logs_topic} -> {kafka.predictions_topic} (dead letters: {kafka.dlq_topic}) "
            f"as group {settings.processor_group!r}, scoring with {name}"
            + (" in per-service context" if isinstance(scorer, ContextualScorer) else "")
            + (f", state in {kafka.state_topic}" if pipeline.state is not None else "")
            + f" (Kafka client: {stream_client(kafka)})"
        )
        if notifier is not None:
            printer.notice(f"Incidents go to {', '.join(r.name for r in notifier.receivers)}")
        if remote is not None and not remote.ready():
            printer.notice(f"ML service at {name} is not ready yet: events will wait for it.")
        pipeline.run()
        printer.notice("Stopping: the batch in hand is done.")
        return 0
    except ScoringConfigError as exc:
        log.error("cannot score: %s", exc)
        printer.notice(f"Stopping: {exc}")
        return 2
    finally:
        if notifier is not None:
            notifier.close()
        if pipeline is not None:
            pipeline.close()
        elif restorer is not None:
            restorer.close(autocommit=False)
        consumer.close(autocommit=False)
        producer.close(timeout=5)
        printer.close()


def make_restorer(settings: ProcessorSettings, kafka: KafkaSettings, scorer: Scorer) -> ConsumerPort | None:
    """The consumer that reads services' saved state back from the changelog; None when no state is kept."""
    if isinstance(scorer, ContextualScorer) and settings.state_changelog:
        return make_stream_consumer(kafka, group_id=None, client_id="anomaly-processor-restore")
    return None


def connect(
    settings: ProcessorSettings, kafka: KafkaSettings, printer: Printer, stop: threading.Event
) -> tuple[ConsumerPort, ProducerPort] | None:
    """The consumer and producer, once Kafka answers (retrying with backoff); None if stopped first."""
    backoff = Backoff(settings.retry_backoff_initial_s, settings.retry_backoff_max_s)
    while not stop.is_set():
        try:
            wait_for_broker(kafka, timeout_s=BROKER_PROBE_TIMEOUT_S)
            ensure_topics(kafka)
            consumer = make_stream_consumer(kafka, group_id=settings.processor_group, **consumer_overrides(settings))
            try:
                producer = make_stream_producer(kafka, **producer_overrides())
            except BaseException:
                consumer.close(autocommit=False)
                raise
            return consumer, producer
        except (BrokerUnavailableError, KafkaError, OSError) as exc:
            shown = f"Kafka unavailable at {kafka.kafka_bootstrap_servers}, retrying in {{delay}}s"
            retry_after(
                backoff, stop.wait, printer, log, "Kafka not available (%s); retrying in %.1fs", exc, shown=shown
            )
    return None


def install_signal_handlers(stop: threading.Event) -> None:
    """First SIGINT/SIGTERM: finish the batch in hand and stop; second: stop at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()  # no printing here: the main thread may be in the middle of a write

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
