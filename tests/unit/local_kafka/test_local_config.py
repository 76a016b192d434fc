"""The local broker's JVM options: a documented default, replaced (not extended) by the environment."""

import pytest
from local_kafka import LocalBrokerConfig


def test_the_broker_keeps_the_jit_to_its_first_tier_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_LOCAL_JVM_OPTS", raising=False)
    assert LocalBrokerConfig().jvm_options == ("-XX:TieredStopAtLevel=1",)

    monkeypatch.setenv("KAFKA_LOCAL_JVM_OPTS", "-Xss1m  -XX:+UseStringDeduplication")
    assert LocalBrokerConfig().jvm_options == ("-Xss1m", "-XX:+UseStringDeduplication")

    monkeypatch.setenv("KAFKA_LOCAL_JVM_OPTS", "")  # the JVM's own defaults
    assert LocalBrokerConfig().jvm_options == ()
