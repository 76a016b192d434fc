"""Incidents told to the tools on-call teams run: Alertmanager (v2 API) and a plain JSON webhook.

The pipeline hands each batch's incident records, once Kafka acknowledged them, to ``Notifier.publish``: a
bounded queue, never a wait. One background thread keeps what each receiver still has to be told and
sends it, retrying with backoff while the receiver is down; nothing is dropped while it is down, because
what is pending is state (one entry per incident), not a growing queue.

* ``AlertmanagerReceiver``: one alert per incident, labels ``alertname, service, signal, severity,
  incident_id`` fixed when it opens (Alertmanager identifies an alert by its labels: sending it again is an
  update, never a second page). Firing alerts are sent again every ``refresh_s`` with ``endsAt`` three
  refreshes ahead, so an alert whose processor died resolves by itself; a resolved incident is sent once
  with ``endsAt`` = its resolution.
* ``WebhookReceiver``: a POST of the incident record (``eventbus.Incident``) when it opens and when it is
  resolved, each once (header ``Idempotency-Key: <incident_id>:<event>`` for receivers that see a replay
  after a processor restart).
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import requests

from anomaly_processor.metrics import ProcessorMetrics
from anomaly_processor.ml_client import connection_reason, response_detail
from anomaly_processor.retry import Backoff
from streaming_detector.explain import explanation_text

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # incident records waiting for the thread; each batch adds a few at most
CRITICAL_SEVERITY = 2.0  # an incident opened at twice the threshold or more is "critical", else "warning"
REQUEST_TIMEOUT_S = 5.0
ALERT_NAME = "ServiceAnomaly"


class DeliveryError(Exception):
    """The receiver did not accept what was sent (down, or refusing): retried later."""


class Receiver(Protocol):
    name: str

    def add(self, record: Mapping[str, Any]) -> None:
        """Take an incident record into what is to be sent."""

    def pending(self, now: float) -> int:
        """How many incidents are to be sent now (0: nothing due)."""

    def send(self, now: float) -> int:
        """Send what is due; return how many incidents were accepted, or raise ``DeliveryError``."""


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _post(session: requests.Session, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    try:
        response = session.post(url, data=body, timeout=REQUEST_TIMEOUT_S, headers=headers)
    except requests.RequestException as exc:
        raise DeliveryError(connection_reason(exc)) from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response_detail(response.content)}")


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # an internal service: no proxy lookups
    session.headers["Content-Type"] = "application/json"
    return session


class AlertmanagerReceiver:
    """Incidents as Alertmanager alerts, through ``POST /api/v2/alerts``."""

    name = "alertmanager"

    def __init__(
        self,
        base_url: str,
        *,
        dashboard_url: str,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/api/v2/alerts"
        self.dashboard_url = dashboard_url
        self.refresh_s = refresh_s
        self._clock = clock
        self._session = session or _session()
        self._labels: dict[str, dict[str, str]] = {}  # incident id -> its labels, fixed when first seen
        self._records: dict[str, Mapping[str, Any]] = {}  # incident id -> latest record, until resolved and sent
        self._changed: set[str] = set()
        self._refreshed_at = 0.0

    def add(self, record: Mapping[str, Any]) -> None:
        incident = record["incident_id"]
        if incident not in self._labels:
            severity = "critical" if record["peak_severity"] >= CRITICAL_SEVERITY else "warning"
            self._labels[incident] = {
                "alertname": ALERT_NAME,
                "service": str(record["service"]),
                "signal": str(record["signal"]),
                "severity": severity,
                "incident_id": incident,
            }
        self._records[incident] = record
        self._changed.add(incident)

    def pending(self, now: float) -> int:
        if self._changed:
            return len(self._changed)
        return len(self._records) if self._records and now - self._refreshed_at >= self.refresh_s else 0

    def send(self, now: float) -> int:
        records = list(self._records.values())
        if not records:
            return 0
        _post(self._session, self.url, orjson.dumps([self.alert(record, now) for record in records]))
        self._refreshed_at = now
        for record in records:
            incident = record["incident_id"]
            self._changed.discard(incident)
            if record["status"] == "resolved" and self._records.get(incident) is record:
                del self._records[incident]
                del self._labels[incident]
        return len(records)

    def alert(self, record: Mapping[str, Any], now: float) -> dict[str, Any]:
        """The Alertmanager alert of an incident record."""
        why = record.get("explanation") or {}
        service = record["service"]
        started = min(float(record["started_at"]), now)
        if record["status"] == "resolved":
            ends = max(started, now if record["resolution"] == "idle" else min(float(record["resolved_at"]), now))
        else:
            ends = now + 3 * self.refresh_s
        text = explanation_text(why) if why else str(record["signal"])
        return {
            "labels": self._labels[record["incident_id"]],
            "annotations": {
                "summary": f"{service}: {text}",
                "description": (
                    f"Incident {record['incident_id']} on {service}: {record['alerts']} anomalous events since "
                    f"{_iso(float(record['started_at']))}, peak severity {record['peak_severity']:.2f} "
                    f"(1 = alert threshold): {text}."
                ),
                "explanation": text,
                "dashboard": self.dashboard_url,
            },
            "startsAt": _iso(started),
            "endsAt": _iso(ends),
            "generatorURL": self.dashboard_url,
        }


class WebhookReceiver:
    """The incident record as a JSON POST when it opens and when it is resolved, each once."""

    name = "webhook"

    def __init__(self, url: str, *, session: requests.Session | None = None) -> None:
        self.url = url
        self._session = session or _session()
        self._queue: list[Mapping[str, Any]] = []
        self._sent: dict[tuple[str, str], None] = {}  # (incident id, event) already accepted, oldest first

    def add(self, record: Mapping[str, Any]) -> None:
        if record["event"] == "updated":
            return
        if (record["incident_id"], record["event"]) not in self._sent:
            self._queue.append(record)

    def pending(self, now: float) -> int:
        return len(self._queue)

    def send(self, now: float) -> int:
        sent = 0
        while self._queue:  # in order: an incident's opening before its resolution
            record = self._queue[0]
            key = (str(record["incident_id"]), str(record["event"]))
            if key not in self._sent:
                _post(self._session, self.url, orjson.dumps(record), {"Idempotency-Key": ":".join(key)})
                self._sent[key] = None
                if len(self._sent) > QUEUE_MAX:
                    del self._sent[next(iter(self._sent))]
                sent += 1
            self._queue.pop(0)
        return sent


class Notifier:
    """The background thread between the pipeline and the receivers; ``publish`` never blocks."""

    def __init__(
        self,
        receivers: Sequence[Receiver],
        *,
        metrics: ProcessorMetrics | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.receivers = list(receivers)
        self.metrics = metrics
        self._clock = clock
        self._queue: queue.Queue[Mapping[str, Any]] = queue.Queue(QUEUE_MAX)
        self._backoff = {r.name: Backoff(backoff_initial_s, backoff_max_s) for r in self.receivers}
        self._retry_at = dict.fromkeys(self._backoff, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="incident-alerts", daemon=True)
        self._thread.start()

    def publish(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            try:
                self._queue.put_nowait(record)
            except queue.Full:  # the thread is stuck: scoring must go on; the record stays on INCIDENTS_TOPIC
                log.error("alerting queue full: incident record %s not sent", record["incident_id"])

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is pending (for at most ``timeout_s``), then stop the thread."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (not self._queue.empty() or self._due()):
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=REQUEST_TIMEOUT_S + 1)

    def _due(self) -> bool:
        now = self._clock()
        return any(r.pending(now) and now >= self._retry_at[r.name] for r in self.receivers)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                record = self._queue.get(timeout=0.2)
            except queue.Empty:
                record = None
            while record is not None:
                for receiver in self.receivers:
                    receiver.add(record)
                try:
                    record = self._queue.get_nowait()
                except queue.Empty:
                    record = None
            for receiver in self.receivers:
                self._attempt(receiver)

    def _attempt(self, receiver: Receiver) -> None:
        now = self._clock()
        due = receiver.pending(now)
        if self.metrics is not None:
            self.metrics.alerts_pending.labels(receiver.name).set(due)
        if not due or now < self._retry_at[receiver.name]:
            return
        backoff = self._backoff[receiver.name]
        try:
            sent = receiver.send(now)
        except DeliveryError as exc:
            delay = backoff.next_delay()
            self._retry_at[receiver.name] = now + delay
            if self.metrics is not None:
                self.metrics.alert_failures.labels(receiver.name).inc()
            log.warning("%s did not take %d incidents (%s); retrying in %.1fs", receiver.name, due, exc, delay)
            return
        except Exception:  # a bug: say so, keep the thread (and scoring) alive, try again later
            log.exception("sending incidents to %s failed", receiver.name)
            self._retry_at[receiver.name] = now + backoff.next_delay()
            return
        if backoff.attempts:
            log.info("%s is back: %d incidents sent", receiver.name, sent)
        backoff.reset()
        if self.metrics is not None:
            self.metrics.alerts_sent.labels(receiver.name).inc(sent)
            self.metrics.alerts_pending.labels(receiver.name).set(receiver.pending(self._clock()))


def make_notifier(
    *,
    alertmanager_url: str | None,
    webhook_url: str | None,
    dashboard_url: str,
    refresh_s: float,
    metrics: ProcessorMetrics | None,
    backoff_initial_s: float,
    backoff_max_s: float,
) -> Notifier | None:
    """The notifier for the receivers configured, or None when none is."""
    receivers: list[Receiver] = []
    if alertmanager_url:
        receivers.append(AlertmanagerReceiver(alertmanager_url, dashboard_url=dashboard_url, refresh_s=refresh_s))
    if webhook_url:
        receivers.append(WebhookReceiver(webhook_url))
    if not receivers:
        return None
    return Notifier(receivers, metrics=metrics, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s)
