"""The processor's retry backoff, the offsets it commits, and its settings."""

import random
from typing import NamedTuple

import pytest
from anomaly_processor.commits import commit_offsets
from anomaly_processor.delivery import KeyPartitioner
from anomaly_processor.retry import Backoff
from anomaly_processor.settings import ProcessorSettings
from kafka import TopicPartition
from kafka.partitioner.default import DefaultPartitioner
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(0.5, 10.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.attempts == 8


def test_jitter_only_shortens_delays_and_varies_them() -> None:
    backoff = Backoff(1.0, 4.0, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(200)]
    bases = [min(4.0, 2.0**n) for n in range(200)]
    assert all(0.8 * base <= delay <= base for delay, base in zip(delays, bases, strict=True))
    assert len({round(d, 6) for d in delays[3:]}) > 100  # capped delays still spread out


def test_backoff_starts_over_after_a_reset() -> None:
    backoff = Backoff(0.5, 10.0, jitter=0.0)
    for _ in range(4):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize(("initial", "cap", "jitter"), [(0, 1, 0.1), (2, 1, 0.1), (1, 2, 1.0), (1, 2, -0.1)])
def test_backoff_refuses_nonsense(initial: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap, jitter=jitter)


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int = 0
    key: bytes | None = None
    value: bytes | None = None
    leader_epoch: int = 3


def test_commit_offsets_are_one_past_the_last_handled_record_of_each_partition() -> None:
    records = [Rec("logs", 0, 10), Rec("logs", 1, 4), Rec("logs", 0, 12), Rec("logs", 0, 11), Rec("other", 0, 99)]
    assert commit_offsets(records) == {
        TopicPartition("logs", 0): OffsetAndMetadata(13, "", 3),
        TopicPartition("logs", 1): OffsetAndMetadata(5, "", 3),
        TopicPartition("other", 0): OffsetAndMetadata(100, "", 3),
    }


def test_nothing_to_commit_for_no_records() -> None:
    assert commit_offsets([]) == {}


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROCESSOR_GROUP", "scorers")
    monkeypatch.setenv("ML_SERVICE_URL", "http://ml:9000")
    monkeypatch.setenv("BATCH_MAX", "500")
    monkeypatch.setenv("PRINT_MODE", "summary")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("ML_SCORING_API_KEY", "s3cret-value")
    settings = ProcessorSettings()
    assert (settings.processor_group, settings.ml_service_url, settings.batch_max) == ("scorers", "http://ml:9000", 500)
    assert (settings.print_mode, settings.log_level) == ("summary", "DEBUG")
    assert settings.ml_scoring_api_key is not None and settings.ml_scoring_api_key.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)


@pytest.mark.parametrize(("name", "value"), [("PRINT_MODE", "loud"), ("BATCH_MAX", "0"), ("ML_BATCH_CAP", "20000")])
def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ProcessorSettings()


def test_every_setting_is_documented() -> None:
    assert all(field.description for field in ProcessorSettings.model_fields.values())


class FakeCluster:
    def __init__(self, partitions: set[int]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return {"predictions"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


class FakeProducer:
    def __init__(self, partitions: set[int]) -> None:
        self.partitions = partitions
        self.lookups = 0

    def partitions_for(self, topic: str) -> set[int]:
        self.lookups += 1
        return self.partitions


def test_records_go_to_the_partition_kafka_pythons_default_partitioner_picks() -> None:
    for partitions in ({0}, {0, 1, 2}, set(range(7))):
        producer = FakeProducer(partitions)
        partition_of = KeyPartitioner(producer)
        reference = DefaultPartitioner()
        for key in [b"auth", b"payment", b"orders", b"\xff\x00", b"x" * 300, *(f"svc-{i}".encode() for i in range(50))]:
            expected = reference.partition("predictions", key, key, b"v", b"v", FakeCluster(partitions))
            assert partition_of("predictions", key) == expected
        assert producer.lookups == 1
        assert partition_of("predictions", None) is None  # unkeyed records are left to the producer
