"""The flat, vectorised forest scores exactly as sklearn's IsolationForest; the gate mutes repeats per service."""

import json

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from streaming_detector import AlertGate, FlatForest, GateConfig


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_flat_forest_equals_sklearn_score_samples(max_features: float) -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(3000, 6)) * [1, 2, 3, 0.5, 1, 10]
    forest = IsolationForest(n_estimators=40, max_samples=256, max_features=max_features, random_state=1).fit(train)
    # In range, far outside it, and exactly on split thresholds (the float32 comparison sklearn makes).
    thresholds = forest.estimators_[0].tree_.threshold
    on_split = np.tile(thresholds[thresholds != -2][:6], (6, 1)).T
    queries = np.vstack([rng.normal(size=(500, 6)) * 3, rng.normal(size=(50, 6)) * 100, on_split])
    assert np.allclose(FlatForest(forest).score_samples(queries), forest.score_samples(queries), rtol=0, atol=1e-12)
    assert FlatForest(forest).score_samples(np.empty((0, 6))).shape == (0,)


def test_gate_alerts_once_per_cooldown_per_service() -> None:
    gate = AlertGate(GateConfig(threshold=1.0, cooldown_events=3))
    services = ["a", "b", "a", "a", "a", "a", "b"]
    scores = np.array([2.0, 0.5, 2.0, 2.0, 0.1, 2.0, 2.0])
    anomaly, score = gate.decide(services, scores)
    # a alerts at 0, is muted for its next 3 events (2, 3, 4), alerts again at 5; b alerts on its own.
    assert anomaly.tolist() == [True, False, False, False, False, True, True]
    assert np.array_equal(score, scores)


def test_gate_ignores_services_not_warm_and_restores_from_a_snapshot() -> None:
    gate = AlertGate(GateConfig(threshold=1.0, cooldown_events=2))
    anomaly, _ = gate.decide(["a", "a"], np.array([5.0, 5.0]), np.array([False, True]))
    assert anomaly.tolist() == [False, True]
    restored = AlertGate(GateConfig(threshold=9.0))
    restored.load_state_dict(json.loads(json.dumps(gate.state_dict())))
    assert restored.decide(["a", "a", "a"], np.full(3, 5.0))[0].tolist() == [False, False, True]
