"""Prometheus metrics of the processor, and the small HTTP server that exposes them with ``/health``.

``GET /metrics`` (any path but ``/health``) answers the Prometheus text format; ``GET /health`` answers
200 while the processing loop runs and has turned within ``HEALTH_STALE_S``, else 503; ``GET /ready`` answers
200 when, in addition, no partition's state is being restored from the changelog. The server runs in
a daemon thread (prometheus_client's threading WSGI server) on ``PROCESSOR_METRICS_HOST:PORT``.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

# The loop turns at least every poll (0.5 s) or retry wait (<= RETRY_BACKOFF_MAX_S); a scoring call or a
# bisection of a rejected batch may hold it longer, but not this long unless it is stuck.
HEALTH_STALE_S = 120.0

# Label values of per-service metrics: a stream with thousands of services must not make thousands of series.
MAX_SERVICE_LABELS = 50
OTHER_SERVICES = "_other"

_DEAD_LETTER_CLASSES = (
    ("empty message", "empty"),
    ("not JSON", "not_json"),
    ("not a JSON object", "not_object"),
    ("ML service rejected", "rejected_by_scorer"),
)


def reason_class(reason: str) -> str:
    """A bounded label for a dead letter's reason: empty, not_json, not_object, rejected_by_scorer or invalid_field."""
    for prefix, name in _DEAD_LETTER_CLASSES:
        if reason.startswith(prefix):
            return name
    return "invalid_field"


class ProcessorMetrics:
    """The processor's counters, histograms and gauges, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter(
            "processor_events_consumed",
            "Kafka records handled: their verdicts and dead letters acknowledged, their commit sent.",
            registry=r,
        )
        self.verdicts = Counter("processor_verdicts", "Verdicts produced to PREDICTIONS_TOPIC.", registry=r)
        self.anomalies = Counter("processor_anomalies", "Verdicts with anomaly=true.", registry=r)
        self.rekeyed = Counter(
            "processor_rekeyed",
            "Events whose key was not their service, forwarded to REPARTITION_TOPIC to be scored by its owner.",
            registry=r,
        )
        self.dead_letters = Counter(
            "processor_dead_letters", "Records produced to DLQ_TOPIC, by class of reason.", ["reason"], registry=r
        )
        self.scoring_retries = Counter(
            "processor_scoring_retries", "Scoring calls failed and retried (ML service unavailable).", registry=r
        )
        self.commits_waited = Counter(
            "processor_commits_waited",
            "Batches committed synchronously because the previous batch's commit was still unconfirmed.",
            registry=r,
        )
        self.batch_size = Histogram(
            "processor_batch_size",
            "Records per handled batch.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.scoring_seconds = Histogram(
            "processor_scoring_seconds",
            "Time to score one batch, retries and isolation of rejected events included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.lag = Gauge(
            "processor_consumer_lag",
            "Records in the partition after the last one committed (highwater - committed offset).",
            ["topic", "partition"],
            registry=r,
        )
        self._state_metrics(r)
        self.incidents = Counter(
            "processor_incidents", "Incident records produced to INCIDENTS_TOPIC, by event.", ["event"], registry=r
        )
        self.open_incidents = Gauge(
            "processor_open_incidents",
            f"Open incidents per service (the first {MAX_SERVICE_LABELS} services seen, the rest as "
            f'service="{OTHER_SERVICES}").',
            ["service"],
            registry=r,
        )
        self.alerts_sent = Counter(
            "processor_alert_deliveries",
            "Incident notifications accepted by a receiver (alertmanager, webhook).",
            ["receiver"],
            registry=r,
        )
        self.alert_failures = Counter(
            "processor_alert_delivery_failures",
            "Incident notifications that failed and will be retried (receiver down or refusing).",
            ["receiver"],
            registry=r,
        )
        self.alerts_pending = Gauge(
            "processor_alerts_pending",
            "Incident notifications not yet accepted, by receiver.",
            ["receiver"],
            registry=r,
        )
        self._service_labels: set[str] = set()
        self._heartbeat = 0.0
        self._running = False
        self._restoring = 0

    def _state_metrics(self, r: CollectorRegistry) -> None:
        """The state changelog's: restores, saves, services in memory."""
        self.restoring_partitions = Gauge(
            "processor_state_restoring_partitions",
            "Partitions whose services' state is being read from STATE_TOPIC (their events wait for it).",
            registry=r,
        )
        self.services_restored = Counter(
            "processor_state_services_restored",
            "Services whose state was read from STATE_TOPIC on assignment (once each, however often it was saved).",
            registry=r,
        )
        self.restore_seconds = Gauge(
            "processor_state_last_restore_seconds", "Duration of the last restore from STATE_TOPIC.", registry=r
        )
        self.states_saved = Counter(
            "processor_state_saved", "Service states produced to STATE_TOPIC before a commit.", registry=r
        )
        self.state_bytes_saved = Counter(
            "processor_state_saved_bytes", "Bytes of service state produced to STATE_TOPIC.", registry=r
        )
        self.services_in_memory = Gauge(
            "processor_state_services_in_memory",
            "Services whose state is in memory (at most STATE_MAX_SERVICES; the rest in the local file).",
            registry=r,
        )

    def observe_incidents(self, records: Iterable[Mapping[str, Any]], open_now: Mapping[str, Any]) -> None:
        """Count incident records and set the open incidents per service (label values bounded)."""
        touched: set[str] = set()
        for record in records:
            self.incidents.labels(record["event"]).inc()
            touched.add(self.service_label(record["service"]))
        counts: dict[str, int] = dict.fromkeys(touched, 0)
        for service in open_now:
            label = self.service_label(service)
            if label in counts:
                counts[label] += 1
        for label, count in counts.items():
            self.open_incidents.labels(label).set(count)

    def service_label(self, service: str) -> str:
        """The service itself while fewer than ``MAX_SERVICE_LABELS`` were labelled, else ``OTHER_SERVICES``."""
        if service in self._service_labels:
            return service
        if len(self._service_labels) < MAX_SERVICE_LABELS:
            self._service_labels.add(service)
            return service
        return OTHER_SERVICES

    def observe_dead_letters(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.dead_letters.labels(reason_class(reason)).inc()

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(max(lag, 0))

    def forget_partition(self, topic: str, partition: int) -> None:
        with contextlib.suppress(KeyError):
            self.lag.remove(topic, str(partition))

    # -- liveness --------------------------------------------------------------------------------------------

    def loop_running(self, running: bool) -> None:
        self._running = running
        self.beat()

    def beat(self) -> None:
        self._heartbeat = time.monotonic()

    def healthy(self) -> bool:
        return self._running and time.monotonic() - self._heartbeat < HEALTH_STALE_S

    def ready(self) -> bool:
        """Healthy and restoring no state: events of every partition it owns are being scored."""
        return self.healthy() and self._restoring == 0

    def set_restoring(self, partitions: int) -> None:
        self._restoring = partitions
        self.restoring_partitions.set(partitions)


def merge_metrics(texts: Iterable[str]) -> str:
    """Prometheus texts of the workers as one: samples with the same name and labels summed.

    Right for every metric here: counters and histograms add up, and a partition's lag gauge is reported by
    the one worker that owns the partition (the others forgot it when it was revoked). The ``_created``
    timestamps cannot be added up: they are left out.
    """
    families: dict[str, tuple[str, str]] = {}  # name -> (type, help), in first-seen order
    samples: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}  # (family, sample, labels) -> sum
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):
                continue  # creation times of counters cannot be added up
            families.setdefault(family.name, (family.type, family.documentation))
            for sample in family.samples:
                key = (family.name, sample.name, tuple(sorted(sample.labels.items())))
                samples[key] = samples.get(key, 0.0) + sample.value
    lines: list[str] = []
    for name, (kind, documentation) in families.items():
        lines.append(f"# HELP {name} {_escape(documentation, help_text=True)}")
        lines.append(f"# TYPE {name} {kind}")
        for (owner, sample_name, labels), value in samples.items():
            if owner == name:
                rendered = ",".join(f'{label}="{_escape(text)}"' for label, text in labels)
                where = f"{{{rendered}}}" if labels else ""
                lines.append(f"{sample_name}{where} {floatToGoString(value)}")
    return "\n".join(lines) + "\n"


def _escape(text: str, help_text: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text if help_text else text.replace('"', '\\"')


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log on stderr for every scrape."""


class MetricsServer:
    """``/metrics`` and ``/health`` on ``host:port`` in a daemon thread; ``close`` stops it.

    ``metrics`` is this process's; a supervisor of workers passes ``scrape`` (the Prometheus text) and
    ``health`` instead.
    """

    def __init__(
        self,
        metrics: ProcessorMetrics | None,
        host: str,
        port: int,
        *,
        scrape: Callable[[], str] | None = None,
        health: Callable[[], bool] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        own = make_wsgi_app(metrics.registry) if metrics is not None else None
        healthy: Callable[[], bool] = health or (metrics.healthy if metrics is not None else (lambda: False))
        is_ready: Callable[[], bool] = ready or (metrics.ready if metrics is not None else (lambda: False))

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO")
            if path in ("/health", "/ready"):
                ok = healthy() if path == "/health" else is_ready()
                start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
                return [
                    b'{"status":"ok"}'
                    if ok
                    else b'{"status":"not processing"}'
                    if path == "/health"
                    else b'{"status":"not ready"}'
                ]
            if own is not None:
                result: Iterable[bytes] = own(environ, start_response)
                return result
            body = (scrape() if scrape is not None else "").encode()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]

        self._server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
