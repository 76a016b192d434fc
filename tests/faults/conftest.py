"""Fixtures of the fault tests: the session's real broker, a trained model, and a ``Rig`` that cleans up.

The broker and per-test topics are the fixtures of ``tests/conftest.py``, shared with the integration tests.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.harness import (
    Child,
    Collector,
    MLServiceProcess,
    ProcessorProcess,
    SteadyProducer,
    kafka_env,
    train_model,
)
from eventbus import KafkaSettings


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("faults-model"))


class Rig:
    """What one fault test starts: ML services, processors, a producer, a collector; all stopped at the end."""

    def __init__(self, settings: KafkaSettings, model_path: Path, folder: Path) -> None:
        self.settings = settings
        self.model_path = model_path
        self.folder = folder
        self.group = f"processor-{uuid.uuid4().hex[:8]}"
        self.children: list[Child] = []
        self.producers: list[SteadyProducer] = []
        self.collectors: list[Collector] = []

    def ml_service(self, name: str = "ml-service", **extra_env: str) -> MLServiceProcess:
        service = MLServiceProcess(self.model_path, self.folder, name=name, **extra_env)
        self.children.append(service)
        service.start()
        return service

    def processor(self, scorer_url: str, name: str | None = None, **extra_env: str) -> ProcessorProcess:
        name = name or f"processor-{sum(isinstance(c, ProcessorProcess) for c in self.children)}"
        processor = ProcessorProcess(
            kafka_env(self.settings), self.folder, group=self.group, scorer_url=scorer_url, name=name, **extra_env
        )
        self.children.append(processor)
        processor.start()
        return processor

    def producer(self, **kwargs: object) -> SteadyProducer:
        producer = SteadyProducer(self.settings, prefix=uuid.uuid4().hex[:8], **kwargs)  # type: ignore[arg-type]
        self.producers.append(producer)
        producer.start()
        return producer

    def collector(self) -> Collector:
        collector = Collector(self.settings)
        self.collectors.append(collector)
        collector.start()
        return collector

    def diagnostics(self) -> str:
        return "\n".join(child.log_tail() for child in self.children)

    def close(self) -> None:
        for producer in self.producers:
            producer._halt.set()
        for child in reversed(self.children):
            child.cleanup()
        for collector in self.collectors:
            collector._halt.set()


@pytest.fixture
def rig(kafka_settings: KafkaSettings, model_path: Path, tmp_path: Path) -> Iterator[Rig]:
    made = Rig(kafka_settings, model_path, tmp_path)
    yield made
    made.close()
