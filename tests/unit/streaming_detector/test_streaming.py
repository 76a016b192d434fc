"""The streaming context detector: catches each kind of incident, stays quiet on healthy traffic, warms up."""

import json

import numpy as np
import pytest

from evaluation.cli import Replay, column_events, replay
from evaluation.quality import evaluate
from evaluation.scenarios import SCENARIO_NAMES, build_scenario
from streaming_detector import ContextualScorer, in_process_scorer, train_context_model


@pytest.fixture(scope="module")
def model():
    return train_context_model()


def score_columns(scorer: ContextualScorer, services, latency, error) -> Replay:
    """One micro-batch given column-wise through the scorer (the old ``score_arrays``)."""
    events = column_events(list(services), np.asarray(latency).tolist(), np.asarray(error).tolist())
    return replay(scorer, events, max(1, len(events)))


def run(model, name: str, seed: int, batch: int = 500):
    scenario = build_scenario(name, seed, scale=0.5)
    events = scenario.events
    output = replay(in_process_scorer(*model), events, batch)
    return scenario, output, evaluate(name, events, scenario.incidents, output.anomaly, output.warm)


@pytest.mark.parametrize("name", [n for n in SCENARIO_NAMES if n != "normal"])
def test_each_incident_kind_is_caught_with_few_false_alarms(model, name: str) -> None:
    _, _, metrics = run(model, name, seed=101)
    assert metrics.incidents > 0
    assert metrics.recall >= 0.75, metrics
    assert metrics.false_positive_rate <= 0.01, metrics


@pytest.mark.parametrize("seed", [101, 202])
def test_healthy_traffic_raises_no_alert(model, seed: int) -> None:
    _, output, metrics = run(model, "normal", seed)
    assert metrics.normal_events > 1000
    assert metrics.false_alerts <= 1


def test_new_service_is_silent_during_warm_up_then_scored(model) -> None:
    detector = in_process_scorer(*model)
    warmup = model[1]["context"]["warmup_events"]
    rng = np.random.default_rng(5)
    latency = 2000 * np.exp(rng.normal(0, 0.2, 200))
    latency[5] *= 10  # an outlier during warm-up: no history, no verdict
    latency[150] *= 10  # the same outlier once warm: caught
    output = score_columns(detector, ["brand-new"] * 200, latency, np.full(200, 0.004))
    assert not output.warm[:warmup].any() and output.warm[warmup:].all()
    assert not output.anomaly[:warmup].any() and (output.score[:warmup] == 0).all()
    assert output.anomaly[150]
    assert output.anomaly.sum() == 1


def test_same_relative_spike_caught_at_any_baseline(model) -> None:
    for median in (15.0, 300.0, 4000.0):
        detector = in_process_scorer(*model)
        rng = np.random.default_rng(7)
        latency = median * np.exp(rng.normal(0, 0.25, 300))
        latency[250] *= 8
        output = score_columns(detector, ["svc"] * 300, latency, np.full(300, 0.005))
        assert np.flatnonzero(output.anomaly).tolist() == [250], median


def test_training_and_scoring_are_deterministic(model) -> None:
    forest, metadata = train_context_model()
    assert metadata["threshold"] == model[1]["threshold"]
    _, first, _ = run(model, "latency_spikes", seed=3)
    _, second, _ = run((forest, metadata), "latency_spikes", seed=3)
    assert np.array_equal(first.score, second.score) and np.array_equal(first.anomaly, second.anomaly)


def test_micro_batch_size_does_not_change_verdicts(model) -> None:
    _, whole, _ = run(model, "level_shifts", seed=4, batch=10**6)
    _, small, _ = run(model, "level_shifts", seed=4, batch=37)
    assert np.allclose(whole.score, small.score) and np.array_equal(whole.anomaly, small.anomaly)


def test_state_snapshot_restores_the_stream(model) -> None:
    events = build_scenario("slow_drift", 9, scale=0.3).events
    half = len(events) // 2
    original = in_process_scorer(*model)
    replay(original, events[:half], half)
    restored = in_process_scorer(*model)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())))
    a = replay(original, events[half:], len(events))
    b = replay(restored, events[half:], len(events))
    assert np.array_equal(a.score, b.score) and np.array_equal(a.anomaly, b.anomaly)


def test_score_batch_answers_each_event_in_order(model) -> None:
    events = build_scenario("error_bursts", 1, scale=0.3).events
    verdicts = [(v.anomaly, v.score) for v in in_process_scorer(*model).score(events)]
    assert len(verdicts) == len(events)
    assert all(isinstance(a, bool) and np.isfinite(s) for a, s in verdicts)
    flagged = [e.label for e, (a, _) in zip(events, verdicts, strict=True) if a]
    assert flagged.count("error_burst") >= 2
    assert len(flagged) - flagged.count("error_burst") <= 1  # at most one false alarm


def _bimodal_latency(seed: int, count: int) -> np.ndarray:
    """A cache in front of a database: 80% hits around 5 ms, 20% misses around 200 ms (not log-normal)."""
    rng = np.random.default_rng(seed)
    hit = rng.random(count) < 0.8
    return np.where(hit, rng.lognormal(np.log(5.0), 0.2, count), rng.lognormal(np.log(200.0), 0.2, count))


def test_service_with_its_own_shape_of_normal_is_learned_from_its_history(model) -> None:
    """The forest alone reads every cache miss as a spike; the service's own history says misses are normal."""
    forest, metadata = model
    latency = _bimodal_latency(3, 6000)
    forest_only = json.loads(json.dumps(metadata))
    forest_only["context"]["history_weight_max"] = 0.0

    def alerts(meta, values):
        output = score_columns(
            in_process_scorer(forest, meta), ["cache"] * len(values), values, np.full(len(values), 0.001)
        )
        return np.flatnonzero(output.anomaly)

    assert len(alerts(forest_only, latency)) >= 3  # what the history is needed against
    assert len(alerts(metadata, latency)) <= 1
    # ...and an outage (every call x8 for 100 events) on that service is still caught, within 5 events.
    outage = latency.copy()
    outage[5000:5100] *= 8.0
    caught = alerts(metadata, outage)
    assert any(5000 <= i < 5005 for i in caught)
