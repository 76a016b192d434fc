"""What the fault tests and the soak run share: real processes, a paced producer, a collector and the tally.

Every event carries a unique id. The tally compares, by id, what the producer got acknowledged with what
came out: a verdict in ``predictions`` (valid events) or a dead letter in ``logs.dlq`` (bad messages, whose
Kafka key is their id). ``lost`` is what came out nowhere; ``duplicates`` is what came out more than once.
"""

import contextlib
import fcntl
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from devstack.processes import LOOPBACK, Child, free_port
from eventbus import KafkaSettings, ensure_topics, make_producer
from streaming_detector.profiles import DEFAULT_SERVICES, generate_normal_events

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE_DIR = REPO_ROOT / "fastapi-ml-service"
PROCESSOR_MAIN = REPO_ROOT / "processor" / "main.py"
# The log simulator's last line: what it sent, and what Kafka acknowledged or refused.
SIMULATOR_SUMMARY = re.compile(r"Summary: sent (\d+) .*?delivered (\d+), failed (\d+)")
RESULTS_FILE = Path(os.environ.get("FAULTS_RESULTS", REPO_ROOT / "bench-results" / "faults.json"))


def train_model(folder: Path) -> Path:
    """A small model (3,000 events, 50 trees) written by the service's own ``save_model.py``."""
    path = folder / "model.joblib"
    subprocess.run(
        [
            sys.executable,
            "save_model.py",
            "--output",
            str(path),
            "--count",
            "3000",
            "--n-estimators",
            "50",
            "--context-services",
            "6",
            "--context-events-per-service",
            "400",
        ],
        cwd=SERVICE_DIR,
        check=True,
        capture_output=True,
    )
    return path


def fresh_topics(bootstrap: str) -> KafkaSettings:
    """Settings naming new topics (logs with 3 partitions, predictions, dlq, incidents) on ``bootstrap``, created."""
    suffix = uuid.uuid4().hex[:10]
    settings = KafkaSettings(
        kafka_bootstrap_servers=bootstrap,
        logs_topic=f"logs-{suffix}",
        predictions_topic=f"predictions-{suffix}",
        dlq_topic=f"logs.dlq-{suffix}",
        incidents_topic=f"incidents-{suffix}",
        repartition_topic=f"logs.by-service-{suffix}",
        state_topic=f"logs.state-{suffix}",
        logs_partitions=3,
    )
    ensure_topics(settings)
    return settings


def kafka_env(settings: KafkaSettings) -> dict[str, str]:
    """This process's environment pointing a service at ``settings``' broker and topics (no API keys)."""
    env = {**os.environ, **settings.environment()}
    for name in ("ML_API_KEY", "ML_SCORING_API_KEY"):
        env.pop(name, None)
    return env


# -- processes -----------------------------------------------------------------------------------------------


class MLServiceProcess(Child):
    """``python main.py`` of the ML service on a free port of 127.0.0.1."""

    def __init__(self, model_path: Path, folder: Path, *, name: str = "ml-service", **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        env = {**os.environ, "ML_PORT": str(self.port), "MODEL_PATH": str(model_path), "LOG_LEVEL": "WARNING"}
        for key in ("ML_HOST", "ML_API_KEY", "ML_SCORING_API_KEY"):
            env.pop(key, None)  # the default host (127.0.0.1) and no keys, unless the test asks
        env.update(extra_env)
        super().__init__(name, [sys.executable, "main.py"], env=env, cwd=SERVICE_DIR, log_path=folder / f"{name}.log")

    def start(self, timeout_s: float = 60) -> None:
        super().start()
        self.wait_ready(f"{self.url}/ready", timeout_s)


class ProcessorProcess(Child):
    """``python processor/main.py`` on the given topics, group and scorer; summaries only."""

    def __init__(
        self, env: dict[str, str], folder: Path, *, group: str, scorer_url: str, name: str, **extra: str
    ) -> None:
        env = {
            **env,
            "PROCESSOR_GROUP": group,
            "ML_SERVICE_URL": scorer_url,
            "PRINT_MODE": "summary",
            "SUMMARY_INTERVAL_S": "2",
            "RETRY_BACKOFF_INITIAL_S": "0.2",
            "RETRY_BACKOFF_MAX_S": "1",
            "BATCH_MAX": "200",
            "LOG_LEVEL": "WARNING",
            "PROCESSOR_METRICS_PORT": "0",  # several processors share this host: no fixed metrics port
            "PROCESSOR_WORKERS": "1",  # one process whose pid a test or replay can signal
            **extra,
        }
        super().__init__(
            name, [sys.executable, str(PROCESSOR_MAIN)], env=env, cwd=REPO_ROOT, log_path=folder / f"{name}.log"
        )


# -- a misbehaving ML service --------------------------------------------------------------------------------


class FaultyProxy:
    """An HTTP proxy on 127.0.0.1 in front of the real ML service that can delay or fail requests.

    ``mode`` is ``"pass"``, ``"slow"`` (sleep ``delay_s`` before forwarding) or an HTTP status such as
    ``503`` or ``500`` (answered without forwarding). ``counts`` tallies what the proxy did.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode: str | int = "pass"
        self.delay_s = 0.0
        self.counts: Counter[str] = Counter()
        self._server = ThreadingHTTPServer((LOOPBACK, free_port()), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if isinstance(mode, int):
                    proxy.counts[f"answered_{mode}"] += 1
                    payload = orjson.dumps({"detail": f"injected {mode}"})
                    self.send_response(mode)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if mode == "slow":
                    proxy.counts["delayed"] += 1
                    time.sleep(proxy.delay_s)
                else:
                    proxy.counts["passed"] += 1
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept", "x-api-key")
                }
                upstream = http.client.HTTPConnection(LOOPBACK, proxy.upstream_port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                    status, content_type = answer.status, answer.getheader("Content-Type", "application/json")
                except OSError:
                    proxy.counts["upstream_down"] += 1
                    status, content_type, content = 502, "application/json", b'{"detail":"upstream down"}'
                finally:
                    upstream.close()
                with contextlib.suppress(OSError):  # the client may have timed out and gone
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

            do_GET = _forward
            do_POST = _forward

        return Handler


# -- producing -----------------------------------------------------------------------------------------------


def bad_messages(prefix: str) -> list[tuple[str, bytes | None, str]]:
    """Kinds of bad message as (id, value, words the dead letter's reason must hold); the id is the Kafka key."""
    template = orjson.loads(generate_normal_events(1, seed=7)[0].to_json())
    text = orjson.dumps(template)
    head = b'{"event_id":"x","timestamp":"2026-01-01T00:00:00+00:00","service":"api",'
    return [
        (f"{prefix}-not-json", b"this is not json", "not JSON"),
        (f"{prefix}-binary", bytes(range(256)) * 4, "not JSON"),
        (f"{prefix}-truncated", text[:40], "not JSON"),
        (f"{prefix}-empty", b"", "not JSON"),
        (f"{prefix}-nan", head + b'"latency_ms":NaN,"error_rate":0.1}', "not JSON"),
        (f"{prefix}-inf", head + b'"latency_ms":12.5,"error_rate":Infinity}', "not JSON"),
        (f"{prefix}-1e400", head + b'"latency_ms":1e400,"error_rate":0.1}', "infinity"),
        (f"{prefix}-deep", b"[" * 10_000 + b"]" * 10_000, "not JSON"),
        (f"{prefix}-oversized", b"[" * 100_000 + b"]" * 100_000, "limit"),
        (f"{prefix}-bom", b"\xef\xbb\xbf" + text, "not JSON"),
        (f"{prefix}-array", b"[1, 2, 3]", "not a JSON object"),
        (f"{prefix}-string", b'"just a string"', "not a JSON object"),
        (f"{prefix}-wrong-type", orjson.dumps({**template, "latency_ms": "slow"}), "latency_ms"),
        (f"{prefix}-bool", orjson.dumps({**template, "error_rate": True}), "error_rate"),
        (f"{prefix}-id-number", orjson.dumps({**template, "event_id": 12345}), "event_id"),
        (f"{prefix}-negative", orjson.dumps({**template, "latency_ms": -5.0}), "latency_ms"),
        (f"{prefix}-rate-above-1", orjson.dumps({**template, "error_rate": 1.5}), "error_rate"),
        (f"{prefix}-missing", orjson.dumps({k: v for k, v in template.items() if k != "service"}), "service"),
        (f"{prefix}-time-in-words", orjson.dumps({**template, "timestamp": "yesterday"}), "timestamp"),
        (f"{prefix}-empty-service", orjson.dumps({**template, "service": ""}), "service"),
        (f"{prefix}-null", None, "null value"),
        (f"{prefix}-huge", orjson.dumps({**template, "service": "s" * 800_000}), "limit"),
    ]


class SteadyProducer(threading.Thread):
    """Produces valid events with unique ids at ``rate`` per second until stopped (or ``total`` sent).

    Every ``bad_every``-th message is a bad one instead (keyed by its own unique id). ``acked`` holds the ids
    Kafka acknowledged, ``failed`` those it refused; only acknowledged messages are owed an outcome.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        rate: float,
        prefix: str,
        services: Iterable[str] = DEFAULT_SERVICES,
        total: int | None = None,
        bad_every: int = 0,
        seed: int = 1,
    ) -> None:
        super().__init__(name=f"producer-{prefix}", daemon=True)
        self.settings = settings
        self.rate = rate
        self.prefix = prefix
        self.services = list(services)
        self.total = total
        self.bad_every = bad_every
        self.pool = [orjson.loads(e.to_json()) for e in generate_normal_events(4000, services=self.services, seed=seed)]
        self.bad = bad_messages(f"{prefix}-bad")
        self.sent = 0
        self.acked: set[str] = set()
        self.acked_bad: set[str] = set()
        self.failed: dict[str, str] = {}
        self.last_by_service: dict[str, str] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.error: BaseException | None = None
        self.producer: KafkaProducer = make_producer(settings, linger_ms=10, max_block_ms=120_000)

    def stop(self, timeout_s: float = 60) -> None:
        """Stop sending, then wait until every message sent is acknowledged or refused."""
        self._halt.set()
        self.join(timeout_s)
        self.producer.flush(timeout_s)
        self.producer.close(timeout=10)
        if self.error is not None:
            raise self.error

    @property
    def produced(self) -> set[str]:
        with self._lock:
            return self.acked | self.acked_bad

    def count_acked(self) -> int:
        with self._lock:
            return len(self.acked) + len(self.acked_bad)

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def _run(self) -> None:
        started = time.monotonic()
        while not self._halt.is_set() and (self.total is None or self.sent < self.total):
            due = int((time.monotonic() - started) * self.rate) + 1
            if self.total is not None:
                due = min(due, self.total)
            while self.sent < due and not self._halt.is_set():
                self._send_one(self.sent)
                self.sent += 1
            self._halt.wait(0.01)

    def _send_one(self, n: int) -> None:
        topic = self.settings.logs_topic
        if self.bad_every and n % self.bad_every == self.bad_every - 1:
            kind_id, value, _ = self.bad[(n // self.bad_every) % len(self.bad)]
            message_id = f"{kind_id}-{n}"
            future = self.producer.send(topic, key=message_id.encode(), value=value)
            future.add_callback(self._acked, message_id, True)
        else:
            event = dict(self.pool[n % len(self.pool)])
            message_id = event["event_id"] = f"{self.prefix}-{n:09d}"
            future = self.producer.send(topic, key=event["service"].encode(), value=orjson.dumps(event))
            future.add_callback(self._acked, message_id, False)
            self.last_by_service[event["service"]] = message_id
        future.add_errback(self._refused, message_id)

    def _acked(self, message_id: str, bad: bool, _metadata: object) -> None:
        with self._lock:
            (self.acked_bad if bad else self.acked).add(message_id)

    def _refused(self, message_id: str, exc: BaseException) -> None:
        with self._lock:
            self.failed[message_id] = repr(exc)


def produce_now(settings: KafkaSettings, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    """Send ``(key, value)`` messages to the logs topic and wait for every acknowledgement."""
    producer = make_producer(settings, max_request_size=4 * 1024 * 1024)
    try:
        futures = [producer.send(settings.logs_topic, key=k, value=v) for k, v in messages]
        producer.flush(60)
        for future in futures:
            future.get(timeout=1)
    finally:
        producer.close(timeout=10)


# -- collecting ----------------------------------------------------------------------------------------------


class Collector(threading.Thread):
    """Reads ``predictions`` and ``logs.dlq`` from their start (no group) and counts outcomes by id."""

    def __init__(self, settings: KafkaSettings) -> None:
        super().__init__(name="collector", daemon=True)
        self.settings = settings
        self.verdicts: Counter[str] = Counter()
        self.dead: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}
        self.verdicts_by_service: Counter[str] = Counter()
        self.scored_by_service: Counter[str] = Counter()  # verdicts with a non-zero score
        self.verdict_log: list[tuple[float, str, str, float]] = []  # (arrival, event id, service, score)
        self.flow: list[tuple[float, str, float]] = []  # (arrival, service, event time), both epoch seconds
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.error: BaseException | None = None
        self.consumer = KafkaConsumer(
            **settings.client_configs(), enable_auto_commit=False, reconnect_backoff_max_ms=2000
        )

    def run(self) -> None:
        try:
            topics = [self.settings.predictions_topic, self.settings.dlq_topic]
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(self._partitions(t))]
            self.consumer.assign(partitions)
            self.consumer.seek_to_beginning(*partitions)
            while not self._halt.is_set():
                for records in self.consumer.poll(timeout_ms=200).values():
                    self._take(records)
        except BaseException as exc:
            self.error = exc
        finally:
            self.consumer.close(autocommit=False)

    def _partitions(self, topic: str) -> set[int]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partitions = self.consumer.partitions_for_topic(topic)
            if partitions:
                return set(partitions)
            time.sleep(0.2)
        raise AssertionError(f"topic {topic} has no partitions")

    def _take(self, records: list[Any]) -> None:
        now = time.monotonic()
        with self._lock:
            for record in records:
                data = orjson.loads(record.value)
                if record.topic == self.settings.predictions_topic:
                    event_id, service, score = data["event_id"], data["service"], float(data["score"])
                    self.verdicts[event_id] += 1
                    self.verdicts_by_service[service] += 1
                    if score != 0.0:
                        self.scored_by_service[service] += 1
                    self.verdict_log.append((now, event_id, service, score))
                    self.flow.append((time.time(), service, float(data.get("event_time") or 0.0)))
                else:
                    key = data["key"] if data["key_encoding"] == "utf-8" else f"b64:{data['key']}"
                    self.dead[key] += 1
                    self.reasons[key] = data["reason"]

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error

    def accounted(self) -> set[str]:
        with self._lock:
            return set(self.verdicts) | set(self.dead)

    def wait_for(self, ids: set[str], timeout_s: float, settle_s: float = 2.0) -> set[str]:
        """Wait until every id has an outcome (then ``settle_s`` more for late duplicates); the missing ids."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            missing = ids - self.accounted()
            if not missing:
                time.sleep(settle_s)
                return set()
            if self.error is not None:
                raise self.error
            time.sleep(0.2)
        return ids - self.accounted()

    def wait_until(self, predicate: Callable[["Collector"], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")

    def total_verdicts(self) -> int:
        with self._lock:
            return sum(self.verdicts.values())

    def recovered_at(self, since: float, services: Iterable[str]) -> float | None:
        """When (epoch seconds) every one of ``services`` had a verdict for an event made after ``since``."""
        firsts: dict[str, float] = {}
        with self._lock:
            for arrival, service, event_time in self.flow:
                if event_time > since and service not in firsts:
                    firsts[service] = arrival
        wanted = set(services)
        return max(firsts[s] for s in wanted) if wanted <= set(firsts) else None

    def wait_recovered(self, since: float, services: Iterable[str], timeout_s: float) -> float:
        """Seconds from ``since`` until every service's new events get verdicts again."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            at = self.recovered_at(since, services)
            if at is not None:
                return at - since
            time.sleep(0.1)
        raise AssertionError(f"verdicts for new events of every service did not resume within {timeout_s}s")


def wait_progress(collector: Collector, verdicts: int, timeout_s: float = 60, what: str = "") -> None:
    """Wait until ``verdicts`` more verdicts have arrived: the pipeline is flowing."""
    target = collector.total_verdicts() + verdicts
    collector.wait_until(lambda c: sum(c.verdicts.values()) >= target, timeout_s, what or f"{verdicts} more verdicts")


def read_event_ids(settings: KafkaSettings) -> list[str]:
    """Every event id in the logs topic, read from its start to its end."""
    consumer = KafkaConsumer(**settings.client_configs(), enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(settings.logs_topic, p)
            for p in sorted(consumer.partitions_for_topic(settings.logs_topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        ids: list[str] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                ids.extend(orjson.loads(r.value)["event_id"] for r in records)
        return ids
    finally:
        consumer.close(autocommit=False)


# -- the tally -----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    scenario: str
    produced: int
    verdicts: int
    dead_lettered: int
    lost: int
    duplicates: int
    misrouted: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.details.items())
        return (
            f"[tally] {self.scenario}: produced={self.produced} verdicts={self.verdicts} "
            f"dead-lettered={self.dead_lettered} lost={self.lost} duplicates={self.duplicates} "
            f"misrouted={self.misrouted} time={self.seconds:.1f}s{extra}"
        )


def make_tally(scenario: str, producer: SteadyProducer, collector: Collector, started: float, **details: Any) -> Tally:
    """The tally of a run fed by ``producer`` (see ``tally_ids``)."""
    if producer.failed:
        details["refused_by_kafka"] = len(producer.failed)
    return tally_ids(scenario, set(producer.acked), set(producer.acked_bad), collector, started, **details)


def tally_ids(
    scenario: str, valid: set[str], bad: set[str], collector: Collector, started: float, **details: Any
) -> Tally:
    """Compare by id what went in with what came out, print it, and record it in ``RESULTS_FILE``.

    ``misrouted`` counts valid events dead-lettered and bad messages given a verdict.
    """
    with collector._lock:
        verdicts, dead = Counter(collector.verdicts), Counter(collector.dead)
    out = set(verdicts) | set(dead)
    duplicates = sum(n - 1 for n in verdicts.values() if n > 1) + sum(n - 1 for n in dead.values() if n > 1)
    tally = Tally(
        scenario=scenario,
        produced=len(valid) + len(bad),
        verdicts=sum(verdicts.values()),
        dead_lettered=sum(dead.values()),
        lost=len((valid | bad) - out),
        duplicates=duplicates,
        misrouted=len(valid & set(dead)) + len(bad & set(verdicts)),
        seconds=round(time.monotonic() - started, 1),
        details=details,
    )
    record(tally)
    return tally


def record(tally: Tally) -> None:
    """Print the tally and record it under its scenario and the processor's ``KAFKA_CLIENT``."""
    client = os.environ.get("KAFKA_CLIENT", "auto")
    tally.details.setdefault("kafka_client", client)
    print(f"\n{tally.line()}", flush=True)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers (pytest -n) record at once: one read-modify-write at a time.
    with RESULTS_FILE.with_name(RESULTS_FILE.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            results = json.loads(RESULTS_FILE.read_text())
        except (OSError, ValueError):
            results = {}
        entry = {**asdict(tally), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        results[f"{tally.scenario} [{client}]"] = entry
        RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
