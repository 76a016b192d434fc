"""The local broker's cluster id: Kafka's storage tool reads an id starting with "-" as an option and fails."""

import base64
import uuid

import pytest
from local_kafka import broker


def test_an_id_that_would_start_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # first six bits 111110: "-" in URL-safe base64
    plain = uuid.UUID(bytes=b"\x10" * 16)
    draws = iter([dashed, dashed, plain])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))

    cluster_id = broker.new_cluster_id()

    assert cluster_id == base64.urlsafe_b64encode(plain.bytes).rstrip(b"=").decode()
    assert len(cluster_id) == 22  # 16 bytes, as the storage tool expects


def test_ids_are_random_and_never_start_with_a_dash() -> None:
    ids = {broker.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
