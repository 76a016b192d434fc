"""Incidents from the verdicts: records for ``INCIDENTS_TOPIC``, then printed, counted and handed to alerting."""

from collections.abc import Callable
from typing import Any

import orjson

from anomaly_processor.delivery import Delivery, Outgoing
from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ml_client import Score
from anomaly_processor.output import Printer
from anomaly_processor.settings import ProcessorSettings
from eventbus import LogEvent
from streaming_detector.incidents import IncidentTracker

IncidentRecord = dict[str, Any]


class IncidentFeed:
    """Groups each service's anomalous verdicts into incidents (opened, updated, resolved)."""

    def __init__(
        self,
        settings: ProcessorSettings,
        topic: str,
        delivery: Delivery,
        printer: Printer,
        metrics: ProcessorMetrics,
        notify: Callable[[list[IncidentRecord]], None] | None = None,
    ) -> None:
        self.tracker = IncidentTracker(
            settings.incident_resolve_s, settings.incident_resolve_events, settings.incident_idle_resolve_s
        )
        self._topic = topic
        self._delivery = delivery
        self._printer = printer
        self._metrics = metrics
        self._notify = notify  # hands delivered incident records to the alerting thread (never blocks)

    def observe(
        self, verdicts: list[tuple[LogEvent, Score]]
    ) -> tuple[list[tuple[LogEvent, Score]], list[IncidentRecord]]:
        """The verdicts with their incident ids, and the incident records they open, update or resolve."""
        return self.tracker.observe(verdicts)

    def records(self, incidents: list[IncidentRecord]) -> list[Outgoing]:
        return [Outgoing(self._topic, record["service"].encode(), orjson.dumps(record)) for record in incidents]

    def announce(self, incidents: list[IncidentRecord]) -> None:
        """Incident records acknowledged by Kafka: print them, count them, hand them to the alerting thread."""
        if not incidents:
            return
        self._printer.incidents(incidents)
        self._metrics.observe_incidents(incidents, self.tracker.open)
        if self._notify is not None:
            self._notify(incidents)

    def resolve_idle(self) -> None:
        """While no events arrive, resolve the incidents of services silent for too long (wall clock)."""
        expired = self.tracker.expire()
        if expired and self._delivery.deliver(self.records(expired)):
            self.announce(expired)
