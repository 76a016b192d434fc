"""Prometheus metrics of the service, and the ASGI middleware that counts requests.

Each app has its own registry (tests build many apps). With ML_WORKERS > 1 every worker process
reports its own figures: scrape them through one worker only if you need exact totals.
"""

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "unmatched"  # label for paths no route matched (keeps label cardinality bounded)


class ServiceMetrics:
    """The service's counters and gauges, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ml_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ml_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.rows_scored = Counter("ml_rows_scored_total", "Events scored by the model.", registry=self.registry)
        self.anomalies = Counter("ml_anomalies_flagged_total", "Events the model flagged.", registry=self.registry)
        self.model_info = Gauge(
            "ml_model_info", "1 for the model version being served.", ["version"], registry=self.registry
        )
        self.model_loaded = Gauge("ml_model_loaded", "1 when a model is loaded, else 0.", registry=self.registry)
        # labels() validates and locks on every call: keep each label set's children once found.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def record_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request under its route template and time it."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route))
            self._request_children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)

    def set_model(self, version: str | None) -> None:
        self.model_info.clear()
        if version is not None:
            self.model_info.labels(version=version).set(1)
        self.model_loaded.set(0 if version is None else 1)

    def count_scored(self, rows: int, anomalies: int) -> None:
        self.rows_scored.inc(rows)
        if anomalies:
            self.anomalies.inc(anomalies)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it (pure ASGI: no body copies)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before answering, the server answers 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.record_request(template, scope["method"], status, time.perf_counter() - start)
