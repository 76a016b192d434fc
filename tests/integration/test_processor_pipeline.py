"""The processor as a real process between a real Kafka broker and the real ML service.

Each test prints a tally: produced / verdicts / dead-lettered / lost / duplicates.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson
import pytest
from anomaly_processor.records import DeadLetter
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from log_simulator.generator import ServiceSpec
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import Child, free_port
from eventbus import VERDICT_FIELDS, KafkaSettings, LogEvent, Verdict, make_admin, stream_client
from streaming_detector.profiles import NormalProfile, generate_normal_events
from tests.ml_context import SMALL_CONTEXT_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

ROOT = Path(__file__).resolve().parents[2]
SERVICE_DIR = ROOT / "fastapi-ml-service"
PROCESSOR_MAIN = ROOT / "processor" / "main.py"


# -- the ML service ------------------------------------------------------------------------------------------


class MLService(Child):
    """``python main.py`` of the ML service on a free port of 127.0.0.1; can be stopped and started again."""

    def __init__(self, model_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "ML_HOST": "127.0.0.1",
            "ML_PORT": str(self.port),
            "MODEL_PATH": str(model_path),
            "LOG_LEVEL": "WARNING",
        }
        env.pop("ML_SCORING_API_KEY", None)
        super().__init__("ml-service", [sys.executable, "main.py"], env=env, cwd=SERVICE_DIR, log_path=log_path)

    def start(self, timeout_s: float = 60) -> None:
        super().start()
        self.wait_ready(f"{self.url}/ready", timeout_s)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("processor-model") / "model.joblib"
    subprocess.run(
        [
            sys.executable,
            "save_model.py",
            *("--output", str(path), "--count", "3000", "--n-estimators", "50"),
            *SMALL_CONTEXT_ARGS,
        ],
        cwd=SERVICE_DIR,
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def ml_service(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLService]:
    service = MLService(model_path, tmp_path_factory.mktemp("ml-service") / "service.log")
    service.start()
    yield service
    service.stop()


# -- the processor -------------------------------------------------------------------------------------------


class Processor:
    """``python processor/main.py`` with the test's topics; stdout and stderr go to files."""

    def __init__(self, env: dict[str, str], folder: Path, name: str) -> None:
        self.env = env
        self.stdout_path = folder / f"{name}.out"
        self.stderr_path = folder / f"{name}.err"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen([sys.executable, str(PROCESSOR_MAIN)], env=env, stdout=out, stderr=err)

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def printed_event_ids(self) -> list[str]:
        ids = []
        for line in self.stdout().splitlines():
            if line.startswith(("Log: ", "⚠ ANOMALY Log: ")):
                log = line.split("Log: ", 1)[1].rsplit(", Anomaly: ", 1)[0]
                ids.append(orjson.loads(log)["event_id"])
        return ids

    def wait_for_output(self, predicate: Callable[[str], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.stdout()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"processor output never matched; exit={self.process.poll()}\n{self.diagnostics()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"processor did not stop within {timeout_s}s\n{self.diagnostics()}") from None

    def diagnostics(self) -> str:
        err = self.stderr_path.read_text(errors="replace")
        return f"--- stdout (tail) ---\n{self.stdout()[-3000:]}\n--- stderr (tail) ---\n{err[-5000:]}"


@pytest.fixture
def start_processor(
    kafka_env: dict[str, str], ml_service: MLService, tmp_path: Path
) -> Iterator[Callable[..., Processor]]:
    group = f"processor-{uuid.uuid4().hex[:8]}"
    started: list[Processor] = []

    def start(**extra: str) -> Processor:
        env = {
            **kafka_env,
            "PROCESSOR_GROUP": group,
            "ML_SERVICE_URL": ml_service.url,
            "PRINT_MODE": "events",
            "RETRY_BACKOFF_INITIAL_S": "0.2",
            "RETRY_BACKOFF_MAX_S": "1",
            "LOG_LEVEL": "INFO",
            "PROCESSOR_METRICS_PORT": str(free_port()),
            **extra,
        }
        env.pop("ML_SCORING_API_KEY", None)
        processor = Processor(env, tmp_path, f"processor-{len(started)}")
        started.append(processor)
        return processor

    start.group = group  # type: ignore[attr-defined]
    yield start
    for processor in started:
        if processor.process.poll() is None:
            processor.process.kill()
            processor.process.wait()


# -- Kafka helpers -------------------------------------------------------------------------------------------


def produce(producer: KafkaProducer, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> None:
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush(30)


def events_as_messages(events: Iterable[LogEvent]) -> list[tuple[bytes | None, bytes | None]]:
    return [(e.key(), e.to_json()) for e in events]


@pytest.fixture
def topic_reader(kafka_settings: KafkaSettings) -> Iterator[Callable[[str], KafkaConsumer]]:
    """Consumers assigned every partition of a topic from its start: no group, so no wait for a rebalance."""
    made: list[KafkaConsumer] = []

    def reader(topic: str) -> KafkaConsumer:
        consumer = KafkaConsumer(**kafka_settings.client_configs(), enable_auto_commit=False)
        made.append(consumer)
        deadline = time.monotonic() + 30
        while not (partitions := consumer.partitions_for_topic(topic)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert partitions, f"topic {topic} has no partitions"
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return consumer

    yield reader
    for consumer in made:
        consumer.close(autocommit=False)


def read_until(consumer: KafkaConsumer, done: Callable[[list], bool], timeout_s: float, settle_s: float = 1.5) -> list:
    """Poll until ``done(records)``, then ``settle_s`` more to catch late duplicates; or until ``timeout_s``."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    while time.monotonic() < (settle_until or deadline):
        for batch in consumer.poll(timeout_ms=200).values():
            records.extend(batch)
        if settle_until is None and done(records):
            settle_until = min(deadline, time.monotonic() + settle_s)
    return records


def verdicts_for(
    consumer: KafkaConsumer, expected_ids: set[str], timeout_s: float = 60
) -> tuple[list[Verdict], Counter[str]]:
    def seen_all(records: list) -> bool:
        return expected_ids <= {orjson.loads(r.value)["event_id"] for r in records}

    records = read_until(consumer, seen_all, timeout_s)
    verdicts = [Verdict.model_validate_json(r.value) for r in records]
    for record, verdict in zip(records, verdicts, strict=True):
        assert record.key == verdict.service.encode()
    return verdicts, Counter(v.event_id for v in verdicts)


def tally(name: str, produced: int, counts: Counter[str], expected_ids: set[str], dead: int = 0) -> tuple[int, int]:
    lost = len(expected_ids - set(counts))
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(
        f"\n[tally] {name}: produced={produced} verdicts={sum(counts.values())} dead-lettered={dead} "
        f"lost={lost} duplicates={duplicates}"
    )
    return lost, duplicates


def committed_offsets(kafka_settings: KafkaSettings, group: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(**kafka_settings.client_configs(), group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(kafka_settings.logs_topic, p)) or 0 for p in range(partitions)}
    finally:
        consumer.close(autocommit=False)


def event_ids_below(kafka_settings: KafkaSettings, ends: dict[int, int]) -> set[str]:
    """Event ids of the logs topic's records below ``ends[partition]``: what those offsets cover."""
    consumer = KafkaConsumer(**kafka_settings.client_configs(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(kafka_settings.logs_topic, p) for p in ends]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ids: set[str] = set()
        remaining = {tp for tp in partitions if ends[tp.partition] > 0}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                for record in records:
                    if record.offset < ends[tp.partition]:
                        ids.add(orjson.loads(record.value)["event_id"])
                    if record.offset >= ends[tp.partition] - 1:
                        remaining.discard(tp)
        assert not remaining, f"could not read up to the committed offsets of {remaining}"
        return ids
    finally:
        consumer.close(autocommit=False)


# -- tests ---------------------------------------------------------------------------------------------------


def test_every_event_gets_exactly_one_verdict(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    events = generate_normal_events(2000, seed=21)
    produce(producer_factory(), kafka_settings.logs_topic, events_as_messages(events))
    processor = start_processor(BATCH_MAX="500", PRINT_MODE="summary", SUMMARY_INTERVAL_S="0.5")

    expected = {e.event_id for e in events}
    verdicts, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    assert processor.stop() == 0, processor.diagnostics()

    lost, duplicates = tally("one verdict per event", len(events), counts, expected)
    assert (lost, duplicates) == (0, 0)
    assert set(counts) == expected
    by_id = {e.event_id: e for e in events}
    for verdict in verdicts:
        event = by_id[verdict.event_id]
        assert verdict.model_dump(exclude=set(VERDICT_FIELDS) - {"event_id"}) == event.model_dump()
        assert verdict.explanation is not None  # every verdict says why
        assert verdict.event_time == event.event_time
        assert verdict.model_version.startswith("iforest-")
    assert "[summary] consumed=" in processor.stdout()
    assert "[stopped] consumed=2000 verdicts=2000" in processor.stdout()
    # make test runs this on each client (KAFKA_CLIENT): the one asked for is the one that ran
    assert f"(Kafka client: {stream_client(kafka_settings)})" in processor.stdout()


def test_malformed_messages_are_dead_lettered_and_the_events_around_them_scored(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    events = generate_normal_events(300, seed=22)
    template = orjson.loads(events[0].to_json())
    bad: dict[bytes, tuple[bytes | None, str]] = {
        b"not-json": (b"this is not json", "not JSON"),
        b"binary": (bytes(range(256)), "not JSON"),
        b"truncated": (events[0].to_json()[:30], "not JSON"),
        b"nan": (events[0].to_json().replace(b'"latency_ms":', b'"latency_ms":NaN,"x":'), "not JSON"),
        b"wrong-type": (orjson.dumps({**template, "latency_ms": "slow"}), "latency_ms"),
        b"negative": (orjson.dumps({**template, "latency_ms": -1.0}), "latency_ms"),
        b"missing": (orjson.dumps({k: v for k, v in template.items() if k != "error_rate"}), "error_rate"),
        b"null": (None, "null value"),
    }
    messages = events_as_messages(events)
    for position, (key, (value, _)) in enumerate(bad.items()):
        messages.insert(20 + position * 35, (key, value))
    produce(producer_factory(), kafka_settings.logs_topic, messages)
    processor = start_processor(BATCH_MAX="64")

    expected = {e.event_id for e in events}
    _, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    dead_records = read_until(
        topic_reader(kafka_settings.dlq_topic), lambda records: len(records) >= len(bad), timeout_s=30
    )
    assert processor.stop() == 0, processor.diagnostics()

    lost, duplicates = tally("malformed mixed in", len(messages), counts, expected, dead=len(dead_records))
    assert (lost, duplicates) == (0, 0)
    letters = {record.key: DeadLetter.model_validate_json(record.value) for record in dead_records}
    assert len(dead_records) == len(bad) and set(letters) == set(bad)
    for key, (value, mention) in bad.items():
        letter = letters[key]
        assert mention in letter.reason, (key, letter.reason)
        assert letter.topic == kafka_settings.logs_topic
        assert letter.value_size == (len(value) if value is not None else -1)
    assert processor.stdout().count("✗ DEAD-LETTER") == len(bad)


def test_the_ml_service_going_away_delays_verdicts_but_loses_none(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
    ml_service: MLService,
) -> None:
    events = generate_normal_events(1500, seed=23)
    producer = producer_factory()
    first, rest = events[:300], events[300:]
    produce(producer, kafka_settings.logs_topic, events_as_messages(first))
    processor = start_processor(BATCH_MAX="100")
    predictions = topic_reader(kafka_settings.predictions_topic)
    read_until(predictions, lambda records: len(records) >= 100, timeout_s=60, settle_s=0)

    ml_service.stop()
    try:
        # Events keep arriving while the service is down.
        sender = threading.Thread(
            target=produce, args=(producer, kafka_settings.logs_topic, events_as_messages(rest)), daemon=True
        )
        sender.start()
        processor.wait_for_output(lambda out: out.count("ML service unavailable at") >= 2, timeout_s=30)
        time.sleep(2)
        sender.join(30)
        assert processor.process.poll() is None, processor.diagnostics()
    finally:
        ml_service.start()

    processor.wait_for_output(lambda out: "is back after" in out, timeout_s=30)
    expected = {e.event_id for e in events}
    _, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    assert processor.stop() == 0, processor.diagnostics()

    lost, duplicates = tally("ML service down for a while", len(events), counts, expected)
    assert lost == 0
    assert duplicates == 0  # the processor never committed nor re-consumed around the outage
    assert "Traceback" not in processor.stderr_path.read_text()


def test_a_killed_processor_loses_nothing_when_restarted(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    events = generate_normal_events(3000, seed=24)
    produce(producer_factory(), kafka_settings.logs_topic, events_as_messages(events))
    # Committed after every batch (by default at most every second, with the state): the bound below.
    first = start_processor(BATCH_MAX="50", STATE_COMMIT_INTERVAL_MS="0")
    first.wait_for_output(lambda out: out.count("\n") >= 400)
    first.stop(signal.SIGKILL)
    printed_before_kill = len(first.printed_event_ids())
    assert 0 < printed_before_kill < len(events), "the kill should land mid-stream"

    second = start_processor(BATCH_MAX="50", STATE_COMMIT_INTERVAL_MS="0")
    expected = {e.event_id for e in events}
    _, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    assert second.stop() == 0, second.diagnostics()

    lost, duplicates = tally(
        f"SIGKILL after {printed_before_kill} printed, then restart", len(events), counts, expected
    )
    assert lost == 0
    # At-least-once: only the batch in hand when killed and the one before it, whose commit may still have been
    # unconfirmed (at most 2 x BATCH_MAX records), are handled twice.
    assert duplicates <= 2 * 50


def test_sigterm_exits_0_and_commits_exactly_what_was_printed(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    events = generate_normal_events(4000, seed=25)
    produce(producer_factory(), kafka_settings.logs_topic, events_as_messages(events))
    processor = start_processor(BATCH_MAX="50")
    processor.wait_for_output(lambda out: out.count("\n") >= 300)

    assert processor.stop(signal.SIGTERM) == 0, processor.diagnostics()

    printed = processor.printed_event_ids()
    assert 0 < len(printed) < len(events), "the stop should land mid-stream"
    assert len(printed) == len(set(printed))
    offsets = committed_offsets(kafka_settings, start_processor.group, kafka_settings.logs_partitions)  # type: ignore[attr-defined]
    committed = event_ids_below(kafka_settings, offsets)
    _, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), committed, timeout_s=30)
    lost, duplicates = tally(f"SIGTERM after {len(printed)} printed", len(events), counts, committed)
    print(f"[tally] committed offsets {offsets} cover {len(committed)} events, {len(printed)} were printed")
    assert committed == set(printed)
    assert (lost, duplicates) == (0, 0)
    assert "[stopped] consumed=" in processor.stdout()


def test_processors_joining_and_leaving_the_group_lose_nothing(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    events = generate_normal_events(20000, seed=26)
    producer = producer_factory()
    sent: list[LogEvent] = []
    rebalanced = threading.Event()

    def paced() -> None:  # until both rebalances are over (~375 events/s), so they land mid-stream however loaded
        for start in range(0, len(events), 30):
            if rebalanced.is_set():
                return
            produce(producer, kafka_settings.logs_topic, events_as_messages(events[start : start + 30]))
            sent.extend(events[start : start + 30])
            time.sleep(0.08)

    group = start_processor.group  # type: ignore[attr-defined]
    first = start_processor(BATCH_MAX="100", BATCH_WAIT_MS="400", PRINT_MODE="quiet")
    wait_for_members(kafka_settings, group, 1, timeout_s=120)
    sender = threading.Thread(target=paced, daemon=True)
    sender.start()
    # The group rebalances: the partitions are split between the two.
    second = start_processor(BATCH_MAX="100", BATCH_WAIT_MS="400", PRINT_MODE="quiet")
    wait_for_members(kafka_settings, group, 2, timeout_s=120)
    # And again: the second takes everything. BATCH_WAIT_MS makes rebalances land while a batch fills.
    assert first.stop() == 0, first.diagnostics()
    wait_for_members(kafka_settings, group, 1, timeout_s=120)
    assert sender.is_alive(), "the traffic ended before the rebalances did"
    rebalanced.set()
    sender.join(60)

    expected = {e.event_id for e in sent}
    _, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    assert second.stop() == 0, second.diagnostics()

    lost, duplicates = tally("a processor joins, then another leaves", len(sent), counts, expected)
    assert lost == 0


def interleave(*streams: list[LogEvent]) -> list[LogEvent]:
    return [event for group in zip(*streams, strict=True) for event in group]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_spike_is_judged_in_its_services_context_and_the_metrics_count_it(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    """450 ms is a 5x spike for a 90 ms payment service, and an ordinary event for a 450 ms auth service."""
    payment = ServiceSpec("payment", NormalProfile(latency_median_ms=90.0, latency_sigma=0.2))
    auth = ServiceSpec("auth", NormalProfile(latency_median_ms=450.0, latency_sigma=0.2))
    before = interleave(
        *(
            generate_normal_events(300, services=[s.name], seed=30 + i, profile=s.profile)
            for i, s in enumerate((payment, auth))
        )
    )
    spike = before[-2].model_copy(update={"event_id": "payment-spike", "latency_ms": 450.0})
    same_latency = before[-1].model_copy(update={"event_id": "auth-450", "latency_ms": 450.0})
    after = interleave(
        *(
            generate_normal_events(20, services=[s.name], seed=40 + i, profile=s.profile)
            for i, s in enumerate((payment, auth))
        )
    )
    events = [*before, spike, same_latency, *after]
    assert len({e.event_id for e in events}) == len(events)
    messages = events_as_messages(events[:100]) + [(b"auth", b"not json")] + events_as_messages(events[100:])
    produce(producer_factory(), kafka_settings.logs_topic, messages)
    metrics_port = free_port()
    processor = start_processor(PRINT_MODE="summary", PROCESSOR_METRICS_PORT=str(metrics_port))

    expected = {e.event_id for e in events}
    verdicts, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    by_id = {v.event_id: v for v in verdicts}
    assert by_id["payment-spike"].anomaly, by_id["payment-spike"]
    assert not by_id["auth-450"].anomaly, by_id["auth-450"]
    assert by_id["payment-spike"].score > by_id["auth-450"].score
    lost, duplicates = tally("context", len(events), counts, expected, dead=1)
    assert (lost, duplicates) == (0, 0)

    deadline = time.monotonic() + 30
    while (metrics := scrape(metrics_port)).get(("processor_events_consumed_total", ())) != len(messages):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/health", timeout=5) as response:
        assert response.status == 200
    assert processor.stop() == 0, processor.diagnostics()
    assert metrics[("processor_verdicts_total", ())] == len(events)
    assert metrics[("processor_anomalies_total", ())] == sum(v.anomaly for v in verdicts)
    assert metrics[("processor_dead_letters_total", (("reason", "not_json"),))] == 1
    assert metrics[("processor_batch_size_sum", ())] == len(messages)
    assert metrics[("processor_scoring_retries_total", ())] == 0
    lags = [value for (name, _), value in metrics.items() if name == "processor_consumer_lag"]
    assert lags and all(lag == 0 for lag in lags)


def test_context_off_scores_each_event_alone(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
    ml_service: MLService,
) -> None:
    events = generate_normal_events(50, seed=50)
    produce(producer_factory(), kafka_settings.logs_topic, events_as_messages(events))
    processor = start_processor(CONTEXT="0", PRINT_MODE="summary")
    verdicts, _ = verdicts_for(topic_reader(kafka_settings.predictions_topic), {e.event_id for e in events})
    assert processor.stop() == 0, processor.diagnostics()
    by_id = {v.event_id: v for v in verdicts}
    for event in events:
        verdict = by_id[event.event_id]
        body = orjson.dumps({"latency_ms": event.latency_ms, "error_rate": event.error_rate})
        request = urllib.request.Request(
            f"{ml_service.url}/predict", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert orjson.loads(response.read())["score"] == pytest.approx(verdict.score)


# -- PROCESSOR_WORKERS -----------------------------------------------------------------------------------------


def wait_for_members(kafka_settings: KafkaSettings, group: str, members: int, timeout_s: float = 60) -> None:
    """Until the group is stable with ``members`` members sharing every partition of the logs topic."""
    admin = make_admin(kafka_settings)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaError):
                info = admin.describe_groups([group])[group]
                assigned = [
                    p
                    for member in info["members"]
                    for topic in (member["member_assignment"] or {}).get("assigned_partitions", [])
                    if topic["topic"] == kafka_settings.logs_topic
                    for p in topic["partitions"]
                ]
                stable = info["group_state"] == "Stable" and len(info["members"]) == members
                if stable and sorted(assigned) == list(range(kafka_settings.logs_partitions)):
                    return
            time.sleep(0.2)
        raise AssertionError(f"group {group} never had {members} members sharing the partitions")
    finally:
        admin.close()


def worker_pids(processor: Processor) -> list[int]:
    processor.wait_for_output(lambda out: "processor workers (pids " in out)
    line = next(line for line in processor.stdout().splitlines() if "processor workers (pids " in line)
    return [int(pid) for pid in line.split("(pids ", 1)[1].rstrip(")").split(", ")]


def test_two_workers_give_every_event_one_verdict_and_commit_what_they_printed(
    kafka_settings: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    topic_reader: Callable[[str], KafkaConsumer],
    start_processor: Callable[..., Processor],
) -> None:
    processor = start_processor(PROCESSOR_WORKERS="2", BATCH_MAX="100")
    assert len(worker_pids(processor)) == 2
    wait_for_members(kafka_settings, start_processor.group, 2)  # type: ignore[attr-defined]
    events = generate_normal_events(3000, seed=27)
    produce(producer_factory(), kafka_settings.logs_topic, events_as_messages(events))

    expected = {e.event_id for e in events}
    _, counts = verdicts_for(topic_reader(kafka_settings.predictions_topic), expected)
    metrics = scrape(int(processor.env["PROCESSOR_METRICS_PORT"]))
    with urllib.request.urlopen(f"http://127.0.0.1:{processor.env['PROCESSOR_METRICS_PORT']}/health") as health:
        assert health.status == 200
    assert processor.stop(signal.SIGTERM) == 0, processor.diagnostics()

    lost, duplicates = tally("PROCESSOR_WORKERS=2", len(events), counts, expected)
    assert (lost, duplicates) == (0, 0)
    # Both workers' counters, summed by the supervisor.
    assert metrics[("processor_verdicts_total", ())] == len(events)
    printed = processor.printed_event_ids()
    assert sorted(printed) == sorted(expected)  # every line whole, though two processes share the stdout
    offsets = committed_offsets(kafka_settings, start_processor.group, kafka_settings.logs_partitions)  # type: ignore[attr-defined]
    assert event_ids_below(kafka_settings, offsets) == expected
    assert processor.stdout().count("[stopped] consumed=") == 2


def test_a_worker_that_dies_stops_the_others_and_the_supervisor_fails(
    kafka_settings: KafkaSettings, start_processor: Callable[..., Processor]
) -> None:
    processor = start_processor(PROCESSOR_WORKERS="2")
    first, second = worker_pids(processor)
    wait_for_members(kafka_settings, start_processor.group, 2)  # type: ignore[attr-defined]

    os.kill(first, signal.SIGKILL)

    assert processor.process.wait(60) != 0, processor.diagnostics()
    assert not Path(f"/proc/{second}").exists(), "the other worker was left running"
    assert "Worker 0 exited with -9: stopping the others" in processor.stdout()
