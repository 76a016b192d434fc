"""The shared event contract: what parses, what is refused and why, and what the settings read."""

import math
from pathlib import Path

import jsonschema
import orjson
import pytest

import eventbus
from eventbus import BadEventError, KafkaSettings, LogEvent, Verdict, parse_event

GOOD = {
    "event_id": "e-1",
    "timestamp": "2026-01-01T00:00:00+00:00",
    "service": "auth",
    "latency_ms": 212.5,
    "error_rate": 0.004,
    "label": "normal",
}


def test_public_surface_is_pinned() -> None:
    assert sorted(eventbus.__all__) == sorted(
        [
            "EVENT_MAX_BYTES",
            "SCHEMA_FILES",
            "json_schemas",
            "LABEL_NORMAL",
            "TIMESTAMP_TEXT_MAX",
            "VERDICT_FIELDS",
            "ErrorRate",
            "EventId",
            "EventOrigin",
            "Label",
            "LatencyMs",
            "ServiceName",
            "Timestamp",
            "epoch_seconds",
            "event_object",
            "time_cell_seconds",
            "validate_event",
            "plain_event",
            "BadEventError",
            "BrokerRefusedError",
            "BrokerUnavailableError",
            "EventBusError",
            "Explanation",
            "Incident",
            "KafkaSettings",
            "LogEvent",
            "Verdict",
            "ensure_topics",
            "make_admin",
            "make_consumer",
            "make_producer",
            "make_stream_consumer",
            "make_stream_producer",
            "stream_client",
            "CommitFuture",
            "ConsumerPort",
            "ProducerPort",
            "SendFuture",
            "StreamRecord",
            "parse_event",
            "wait_for_broker",
        ]
    )
    for name in eventbus.__all__:
        assert hasattr(eventbus, name)


def test_valid_event_round_trips_through_json() -> None:
    event = parse_event(orjson.dumps(GOOD))
    assert event == LogEvent(**GOOD)
    assert parse_event(event.to_json()) == event
    assert event.key() == b"auth"


def test_integer_latency_is_accepted_and_label_defaults_to_normal() -> None:
    raw = {k: v for k, v in GOOD.items() if k != "label"} | {"latency_ms": 200}
    event = parse_event(orjson.dumps(raw))
    assert event.latency_ms == 200.0 and event.label == "normal"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"not json at all", "not JSON"),
        (b"\x00\xff\xfe binary", "not JSON"),
        (b'{"event_id": "e-1", "service": "au', "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"latency_ms": NaN}', "not JSON"),
        (orjson.dumps({**GOOD, "latency_ms": "212"}), "latency_ms"),
        (orjson.dumps({**GOOD, "latency_ms": True}), "latency_ms"),
        (orjson.dumps({**GOOD, "latency_ms": -1}), "latency_ms"),
        (orjson.dumps(GOOD).replace(b"212.5", b"1e400"), "not JSON"),
        (orjson.dumps(GOOD).replace(b"212.5", b"1" + b"0" * 400), "not JSON"),
        (orjson.dumps({**GOOD, "error_rate": 1.5}), "error_rate"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "service"}), "service"),
        (orjson.dumps({**GOOD, "service": ""}), "service"),
        (orjson.dumps({**GOOD, "timestamp": "half past nine"}), "timestamp"),
        (orjson.dumps({**GOOD, "timestamp": -3}), "timestamp"),
        (orjson.dumps({**GOOD, "timestamp": [1]}), "timestamp"),
        (orjson.dumps({**GOOD, "host": "x" * 70_000}), "limit"),
    ],
)
def test_bad_messages_raise_with_a_reason_naming_the_problem(raw: bytes, named: str) -> None:
    with pytest.raises(BadEventError) as caught:
        parse_event(raw)
    assert named in caught.value.reason


def test_null_value_is_a_bad_event() -> None:
    with pytest.raises(BadEventError, match="empty"):
        parse_event(None)


def test_verdict_extends_the_event_and_refuses_non_finite_scores() -> None:
    verdict = Verdict(**GOOD, anomaly=True, score=0.7, model_version="m1")
    assert orjson.loads(verdict.to_json())["anomaly"] is True
    with pytest.raises(ValueError):
        Verdict(**GOOD, anomaly=True, score=math.inf, model_version="m1")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092, broker-b:9092")
    monkeypatch.setenv("LOGS_TOPIC", "my-logs")
    settings = KafkaSettings()
    assert settings.bootstrap_servers == ["broker-a:9092", "broker-b:9092"]
    assert settings.logs_topic == "my-logs"
    assert settings.predictions_topic == "predictions" and settings.dlq_topic == "logs.dlq"


def test_environment_points_another_process_at_the_same_broker_and_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = KafkaSettings(
        kafka_bootstrap_servers="broker-a:9093", logs_topic="l", predictions_topic="p", dlq_topic="d", logs_partitions=5
    )
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    assert KafkaSettings() == settings


def test_sasl_password_reaches_the_client_but_never_its_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "pipeline")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-secret")
    settings = KafkaSettings()
    configs = settings.client_configs()
    assert configs["security_protocol"] == "SASL_SSL"
    assert configs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert configs["sasl_plain_password"] == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings)


def test_the_published_json_schemas_are_the_ones_the_schema_generates() -> None:
    """``docs/schema/`` is regenerated by ``make schemas``; a change to the schema without it fails here."""
    folder = Path(__file__).resolve().parents[3] / "docs" / "schema"
    for name, schema in eventbus.json_schemas().items():
        assert orjson.loads((folder / eventbus.SCHEMA_FILES[name]).read_bytes()) == schema, f"run make schemas ({name})"


def test_the_published_schemas_accept_the_original_event_and_its_verdict_and_refuse_bad_ones() -> None:
    schemas = eventbus.json_schemas()
    event_schema = jsonschema.Draft202012Validator(schemas["event"])
    original = {"timestamp": 1767225600.25, "service": "auth", "latency_ms": 187.2, "error_rate": 0.42}
    assert not list(event_schema.iter_errors(original))
    assert not list(event_schema.iter_errors({**original, "timestamp": "2026-01-01T00:00:00Z", "host": "h"}))
    for bad in ({**original, "latency_ms": -1}, {**original, "error_rate": 2}, {"service": "auth"}):
        assert list(event_schema.iter_errors(bad))
    verdict = {**original, "event_id": "logs:0:1", "event_time": 1767225600.25, "anomaly": False, "score": 0.3}
    verdict_schema = jsonschema.Draft202012Validator(schemas["verdict"])
    assert not list(verdict_schema.iter_errors({**verdict, "model_version": "m"}))
    assert list(verdict_schema.iter_errors(verdict))  # model_version missing
