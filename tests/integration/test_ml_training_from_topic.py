"""``save_model.py --from-topic``: trains on the healthy history of a real ``logs`` topic."""

from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer
from ml_service.model import load_bundle
from ml_service.training import main

from eventbus import KafkaSettings, LogEvent
from streaming_detector.profiles import generate_normal_events
from tests.ml_context import SMALL_CONTEXT_ARGS

pytestmark = pytest.mark.integration


@pytest.fixture
def kafka_env_vars(kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch) -> KafkaSettings:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.kafka_bootstrap_servers)
    monkeypatch.setenv("LOGS_TOPIC", kafka_settings.logs_topic)
    return kafka_settings


def test_trains_on_normal_events_only(
    kafka_env_vars: KafkaSettings,
    producer_factory: Callable[..., KafkaProducer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = kafka_env_vars.logs_topic
    normal = generate_normal_events(1200, seed=21)
    spikes = [
        LogEvent(**{**e.model_dump(), "latency_ms": 9000.0, "label": "latency_spike"})
        for e in generate_normal_events(100, seed=22)
    ]
    producer = producer_factory()
    for event in [*normal, *spikes]:
        producer.send(topic, key=event.key(), value=event.to_json())
    for junk in (b"not json", b"[]", b'{"latency_ms": -1}', b"", b'{"latency_ms": 1, "error_rate": 2}'):
        producer.send(topic, key=b"junk", value=junk)
    producer.flush()

    output = tmp_path / "model.joblib"
    assert (
        main(
            ["--from-topic", "--output", str(output), "--min-events", "1000", "--timeout-s", "60", *SMALL_CONTEXT_ARGS]
        )
        == 0
    )

    printed = capsys.readouterr().out
    assert (
        f"read 1305 events from '{topic}': 1200 normal kept, 100 labelled anomalous and 5 malformed skipped" in printed
    )
    training = load_bundle(output).metadata.training
    assert training.source == f"topic {topic}"
    assert training.rows == 1200
    assert training.features["latency_ms"].max == max(e.latency_ms for e in normal)  # no spike leaked in


def test_count_bounds_what_is_read(
    kafka_env_vars: KafkaSettings, producer_factory: Callable[..., KafkaProducer], tmp_path: Path
) -> None:
    producer = producer_factory()
    for event in generate_normal_events(900, seed=23):
        producer.send(kafka_env_vars.logs_topic, key=event.key(), value=event.to_json())
    producer.flush()
    output = tmp_path / "model.joblib"
    argv = ["--from-topic", kafka_env_vars.logs_topic, "--output", str(output), "--count", "400", "--min-events", "300"]
    argv += SMALL_CONTEXT_ARGS
    assert main(argv) == 0
    assert load_bundle(output).metadata.training.rows == 400


def test_a_missing_topic_is_a_clear_error(
    kafka_env_vars: KafkaSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--from-topic", "no-such-topic-here", "--output", str(tmp_path / "m.joblib"), "--timeout-s", "20"]) == 1
    )
    assert "topic 'no-such-topic-here' does not exist" in capsys.readouterr().err
