"""Processor metrics: what the loop counts, and the /metrics + /health server."""

import urllib.error
import urllib.request

import pytest
from anomaly_processor.errors import ScoringUnavailableError
from anomaly_processor.metrics import MetricsServer, ProcessorMetrics, reason_class
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.unit.anomaly_processor.test_loop import P0, P1, Harness, ScriptedScorer


def samples(metrics: ProcessorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("empty message (null value)", "empty"),
        ("not JSON: unexpected character", "not_json"),
        ("not a JSON object: got list", "not_object"),
        ("latency_ms: Input should be greater than or equal to 0", "invalid_field"),
        ("ML service rejected the event (422): body[0].latency_ms: ...", "rejected_by_scorer"),
    ],
)
def test_dead_letter_reasons_fall_in_few_classes(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def test_the_loop_counts_what_it_consumed_produced_and_retried() -> None:
    scorer = ScriptedScorer([ScoringUnavailableError("Connection refused")])
    h = Harness(scorer)
    h.consumer.highwaters = {P0: 40, P1: 4}
    h.queue(P0, [h.events[0].to_json(), b"garbage", h.events[1].to_json(), None], first_offset=10)
    h.queue(P1, [h.events[2].to_json()], first_offset=3)
    assert h.pipeline.run_once() == 5
    got = samples(h.pipeline.metrics)
    assert got[("processor_events_consumed_total", ())] == 5
    assert got[("processor_verdicts_total", ())] == 3
    assert got[("processor_anomalies_total", ())] == 0
    assert got[("processor_dead_letters_total", (("reason", "not_json"),))] == 1
    assert got[("processor_dead_letters_total", (("reason", "empty"),))] == 1
    assert got[("processor_scoring_retries_total", ())] == 1
    assert got[("processor_batch_size_count", ())] == 1 and got[("processor_batch_size_sum", ())] == 5
    assert got[("processor_scoring_seconds_count", ())] == 1
    h.pipeline.run_once()  # the commit is confirmed by the next turn of the loop: lag is measured from it
    got = samples(h.pipeline.metrics)
    assert got[("processor_consumer_lag", (("partition", "0"), ("topic", "logs")))] == 40 - 14
    assert got[("processor_consumer_lag", (("partition", "1"), ("topic", "logs")))] == 0


def test_server_answers_metrics_and_health_while_the_loop_runs() -> None:
    metrics = ProcessorMetrics()
    metrics.verdicts.inc(7)
    server = MetricsServer(metrics, "127.0.0.1", free_port())
    base = f"http://127.0.0.1:{server.port}"
    try:
        with pytest.raises(urllib.error.HTTPError) as not_running:
            urllib.request.urlopen(f"{base}/health", timeout=5)
        assert not_running.value.code == 503
        metrics.loop_running(True)
        with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["processor_verdicts"].samples[0].value == 7
        metrics.loop_running(False)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/health", timeout=5)
    finally:
        server.close()
