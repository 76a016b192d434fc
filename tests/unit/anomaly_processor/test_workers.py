"""PROCESSOR_WORKERS: how many workers ``auto`` means, and the supervisor's sum of their metrics."""

import pytest
from anomaly_processor.metrics import ProcessorMetrics, merge_metrics
from anomaly_processor.settings import ProcessorSettings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_auto_is_one_worker_per_partition_and_at_most_two_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    auto = ProcessorSettings(processor_workers="auto")
    assert auto.worker_count(partitions=3) == 3
    assert auto.worker_count(partitions=1) == 1
    assert auto.worker_count(partitions=12) == 4
    assert ProcessorSettings(processor_workers=2).worker_count(partitions=3) == 2


def test_by_default_every_core_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCESSOR_WORKERS", raising=False)  # the test session pins 1 for its processors
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert ProcessorSettings().worker_count(partitions=3) == 3


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_a_worker_count_that_means_nothing_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PROCESSOR_WORKERS", value)
    with pytest.raises(ValidationError):
        ProcessorSettings()


def test_the_workers_metrics_are_summed_and_each_partitions_lag_kept() -> None:
    first, second = ProcessorMetrics(), ProcessorMetrics()
    first.consumed.inc(5)
    second.consumed.inc(7)
    first.batch_size.observe(3)
    second.batch_size.observe(300)
    first.observe_dead_letters(["not JSON: x"])
    second.observe_dead_letters(["not JSON: y", "latency_ms: Input should be >= 0"])
    first.set_lag('we"ird', 0, 4)
    second.set_lag('we"ird', 1, 6)

    merged = samples(merge_metrics(generate_latest(m.registry).decode() for m in (first, second)))

    assert merged[("processor_events_consumed_total", ())] == 12
    assert merged[("processor_batch_size_count", ())] == 2 and merged[("processor_batch_size_sum", ())] == 303
    assert merged[("processor_batch_size_bucket", (("le", "10.0"),))] == 1
    assert merged[("processor_dead_letters_total", (("reason", "not_json"),))] == 2
    assert merged[("processor_dead_letters_total", (("reason", "invalid_field"),))] == 1
    assert merged[("processor_consumer_lag", (("partition", "0"), ("topic", 'we"ird')))] == 4
    assert merged[("processor_consumer_lag", (("partition", "1"), ("topic", 'we"ird')))] == 6
    assert not any(name.endswith("_created") for name, _ in merged)  # timestamps do not add up


def test_no_worker_answering_gives_an_empty_scrape() -> None:
    assert samples(merge_metrics([])) == {}
