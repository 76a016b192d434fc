"""The Kafka reader behind the dashboard: runs only while someone watches.

It reads ``predictions`` (verdicts) and the dead-letter topic without a consumer group: partitions are
assigned by hand and it starts from "now minus the window", so it never joins or disturbs the
processor's group and commits nothing. Every few seconds it also reads the processor group's committed
offsets against the end of ``logs`` (consumer lag) and the size of the dead-letter topic.

The first client to connect starts the reader thread; it stops ``dashboard_idle_grace_s`` after the
last one left, so an unwatched ML service spends nothing on it.
"""

import logging
import threading
import time
from typing import Any, Protocol

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from eventbus import EventBusError, Incident, KafkaSettings, Verdict, make_admin, make_consumer
from ml_service.dashboard.incidents import IncidentBoard
from ml_service.dashboard.settings import DashboardSettings
from ml_service.dashboard.window import LiveWindow

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 250
POLL_MAX_RECORDS = 5000
RETRY_DELAY_S = 2.0
# Fail fast enough that the page says "Kafka unavailable" rather than "connecting" for long.
BOOTSTRAP_TIMEOUT_MS = 5000


class Feed(Protocol):
    """What the web routes need from a feed (a test can hand them a prefilled one)."""

    settings: DashboardSettings
    window: LiveWindow

    def acquire(self) -> None: ...

    def release(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class LiveFeed:
    """Reference-counted background reader that fills a ``LiveWindow``."""

    def __init__(self, kafka: KafkaSettings, settings: DashboardSettings) -> None:
        self.kafka = kafka
        self.settings = settings
        self.window = LiveWindow(
            window_s=settings.dashboard_window_s,
            max_anomalies=settings.dashboard_max_anomalies,
            max_services=settings.dashboard_max_services,
        )
        self.incidents = IncidentBoard()
        self._lock = threading.Lock()
        self._subscribers = 0
        self._last_release = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state = "idle"
        self._detail = "starts when the first dashboard client connects"

    # --- lifecycle -----------------------------------------------------------------------------

    def acquire(self) -> None:
        """A client starts watching: start the reader if it is not running."""
        with self._lock:
            self._subscribers += 1
            if self._thread is None:
                self._stop.clear()
                self.window.clear()
                self.incidents.clear()
                self._set_state("starting", "connecting to Kafka")
                self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
                self._thread.start()

    def release(self) -> None:
        """A client left; the reader stops after the grace period if nobody else watches."""
        with self._lock:
            self._subscribers = max(0, self._subscribers - 1)
            self._last_release = time.monotonic()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the reader now (application shutdown)."""
        with self._lock:
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self._state,
                "detail": self._detail,
                "subscribers": self._subscribers,
                "topics": {
                    "predictions": self.kafka.predictions_topic,
                    "dead_letter": self.kafka.dlq_topic,
                    "logs": self.kafka.logs_topic,
                },
                "processor_group": self.settings.processor_group,
            }

    def _set_state(self, state: str, detail: str) -> None:
        if state != self._state:
            log.info("dashboard feed %s: %s", state, detail)
        self._state, self._detail = state, detail

    def _should_exit(self) -> bool:
        """True (and the thread is forgotten) once stopped, or idle past the grace period."""
        with self._lock:
            idle = (
                self._subscribers == 0 and time.monotonic() - self._last_release >= self.settings.dashboard_idle_grace_s
            )
            if self._stop.is_set() or idle:
                self._thread = None
                self._set_state("idle", "stopped: nobody watching")
                return True
            return False

    # --- the reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._should_exit():
            consumer: KafkaConsumer | None = None
            admin: KafkaAdminClient | None = None
            try:
                # A viewer skips CRC checks: without the C crc32c module they cost kafka-python most of its time.
                consumer = make_consumer(
                    self.kafka,
                    group_id=None,
                    allow_auto_create_topics=False,
                    check_crcs=False,
                    bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                )
                admin = make_admin(self.kafka, bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS)
                if not self._assign(consumer):
                    self._stop.wait(RETRY_DELAY_S)
                    continue
                with self._lock:
                    self._set_state("live", f"reading {self.kafka.predictions_topic}")
                self._consume(consumer, admin)
            except (KafkaError, EventBusError, OSError) as exc:
                with self._lock:
                    self._set_state("broker_unavailable", f"Kafka at {self.kafka.kafka_bootstrap_servers}: {exc}")
                log.warning("dashboard feed: Kafka unavailable (%s); retrying in %.0fs", exc, RETRY_DELAY_S)
                self._stop.wait(RETRY_DELAY_S)
            finally:
                for client in (consumer, admin):
                    if client is not None:
                        try:
                            client.close()
                        except (KafkaError, OSError) as exc:
                            log.debug("dashboard feed: error while closing a client: %s", exc)

    def _assign(self, consumer: KafkaConsumer) -> bool:
        """Assign every partition of predictions (and the DLQ if it exists), positioned at now minus the window."""
        predictions = consumer.partitions_for_topic(self.kafka.predictions_topic)
        if not predictions:
            with self._lock:
                self._set_state("waiting_for_topic", f"topic {self.kafka.predictions_topic} does not exist yet")
            return False
        partitions = [TopicPartition(self.kafka.predictions_topic, p) for p in sorted(predictions)]
        partitions += [TopicPartition(self.kafka.dlq_topic, p) for p in sorted(self._dlq_partitions(consumer))]
        incidents = consumer.partitions_for_topic(self.kafka.incidents_topic) or ()
        partitions += [TopicPartition(self.kafka.incidents_topic, p) for p in sorted(incidents)]
        consumer.assign(partitions)
        since_ms = int((time.time() - self.settings.dashboard_window_s) * 1000)
        found = consumer.offsets_for_times({tp: since_ms for tp in partitions})
        ends = consumer.end_offsets(partitions)
        cap = self.settings.dashboard_backfill_max_per_partition
        for tp in partitions:
            at_time = found.get(tp)
            start = at_time.offset if at_time is not None else ends[tp]
            consumer.seek(tp, max(start, ends[tp] - cap, 0))
        return True

    def _dlq_partitions(self, consumer: KafkaConsumer) -> set[int]:
        return set(consumer.partitions_for_topic(self.kafka.dlq_topic) or ())

    def _consume(self, consumer: KafkaConsumer, admin: KafkaAdminClient) -> None:
        next_prune = next_lag = 0.0
        while not self._should_exit():
            batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=POLL_MAX_RECORDS)
            for tp, records in batches.items():
                if tp.topic == self.kafka.dlq_topic:
                    self.window.add_dead_lettered(r.timestamp / 1000.0 for r in records)
                elif tp.topic == self.kafka.incidents_topic:
                    self._add_incidents(records)
                else:
                    self._add_verdicts(records)
            now = time.monotonic()
            if now >= next_prune:
                self.window.prune()
                next_prune = now + 1.0
            if now >= next_lag:
                self._read_broker_figures(consumer, admin)
                next_lag = now + self.settings.dashboard_lag_interval_s

    def _add_verdicts(self, records: list[Any]) -> None:
        stamped = []
        unreadable = 0
        for record in records:
            try:
                stamped.append((record.timestamp / 1000.0, Verdict.model_validate_json(record.value)))
            except (ValidationError, ValueError, TypeError):
                unreadable += 1
        if unreadable:
            # The processor owns dead-lettering; a reader only counts what it cannot draw.
            log.debug("dashboard feed: %d unreadable verdicts skipped", unreadable)
            self.window.count_unreadable(unreadable)
        self.window.add_verdicts(stamped)

    def _add_incidents(self, records: list[Any]) -> None:
        incidents = []
        for record in records:
            try:
                incidents.append(Incident.model_validate_json(record.value))
            except (ValidationError, ValueError, TypeError):
                log.debug("dashboard feed: unreadable incident record skipped")
        self.incidents.add(incidents)

    def _read_broker_figures(self, consumer: KafkaConsumer, admin: KafkaAdminClient) -> None:
        lag: int | None = None
        dead_lettered: int | None = None
        try:
            lag = self._processor_lag(consumer, admin)
            dlq = [TopicPartition(self.kafka.dlq_topic, p) for p in self._dlq_partitions(consumer)]
            if dlq:
                ends, starts = consumer.end_offsets(dlq), consumer.beginning_offsets(dlq)
                dead_lettered = sum(ends[tp] - starts[tp] for tp in dlq)
        except KafkaError as exc:
            log.warning("dashboard feed: could not read the processor lag or the dead-letter size: %s", exc)
        self.window.set_broker_figures(consumer_lag=lag, dead_lettered_total=dead_lettered)

    def _processor_lag(self, consumer: KafkaConsumer, admin: KafkaAdminClient) -> int | None:
        """Messages in ``logs`` the processor group has not committed yet; None if it never committed."""
        group = self.settings.processor_group
        committed = admin.list_group_offsets(group).get(group, {})
        committed = {tp: meta.offset for tp, meta in committed.items() if tp.topic == self.kafka.logs_topic}
        if not any(offset >= 0 for offset in committed.values()):
            return None
        logs = self.kafka.logs_topic
        partitions = [TopicPartition(logs, p) for p in consumer.partitions_for_topic(logs)]
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        lag = 0
        for tp in partitions:
            position = committed.get(tp, -1)
            lag += ends[tp] - (position if position >= 0 else starts[tp])
        return max(lag, 0)


_feed: LiveFeed | None = None
_feed_lock = threading.Lock()


def get_feed() -> LiveFeed:
    """The process-wide feed, configured from the environment on first use (a FastAPI dependency)."""
    global _feed
    with _feed_lock:
        if _feed is None:
            _feed = LiveFeed(KafkaSettings(), DashboardSettings())
        return _feed


def shutdown_dashboard() -> None:
    """Stop the Kafka reader if it runs; call from the application's shutdown."""
    with _feed_lock:
        feed = _feed
    if feed is not None:
        feed.close()
