"""Prometheus metrics of the processor, and the small HTTP server that exposes them with ``/health``.

``GET /metrics`` (any path but ``/health``) answers the Prometheus text format; ``GET /health`` answers
200 while the processing loop runs and has turned within ``HEALTH_STALE_S``, else 503. The server runs in
a daemon thread (prometheus_client's threading WSGI server) on ``PROCESSOR_METRICS_HOST:PORT``.
"""

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

# The loop turns at least every poll (0.5 s) or retry wait (<= RETRY_BACKOFF_MAX_S); a scoring call or a
# bisection of a rejected batch may hold it longer, but not this long unless it is stuck.
HEALTH_STALE_S = 120.0

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
        self.consumed = Counter("processor_events_consumed", "Kafka records handled and committed.", registry=r)
        self.verdicts = Counter("processor_verdicts", "Verdicts produced to PREDICTIONS_TOPIC.", registry=r)
        self.anomalies = Counter("processor_anomalies", "Verdicts with anomaly=true.", registry=r)
        self.dead_letters = Counter(
            "processor_dead_letters", "Records produced to DLQ_TOPIC, by class of reason.", ["reason"], registry=r
        )
        self.scoring_retries = Counter(
            "processor_scoring_retries", "Scoring calls failed and retried (ML service unavailable).", registry=r
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
        self._heartbeat = 0.0
        self._running = False

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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log on stderr for every scrape."""


class MetricsServer:
    """``/metrics`` and ``/health`` on ``host:port`` in a daemon thread; ``close`` stops it."""

    def __init__(self, metrics: ProcessorMetrics, host: str, port: int) -> None:
        scrape = make_wsgi_app(metrics.registry)
        health: Callable[[], bool] = metrics.healthy

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/health":
                ok = health()
                start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
                return [b'{"status":"ok"}' if ok else b'{"status":"not processing"}']
            result: Iterable[bytes] = scrape(environ, start_response)
            return result

        self._server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
