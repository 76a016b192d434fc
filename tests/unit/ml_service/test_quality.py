"""Model quality on the simulator's healthy profile: few false alarms, most injected incidents caught.

The model is trained exactly as ``python save_model.py`` does by default, then judged on traffic
from seeds it never saw (three services).
"""

import numpy as np
import pytest
from ml_service.model import ModelBundle, load_bundle, save_bundle, train_model
from ml_service.training import DEFAULT_TRAINING_EVENTS, simulated_training_data

from streaming_detector.profiles import generate_normal_events
from tests.ml_context import small_context_model

FRESH_SEEDS = (101, 202, 303)
EVENTS_PER_SEED = 6000


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    data = simulated_training_data(DEFAULT_TRAINING_EVENTS, seed=0)
    forest, metadata = train_model(data.latency_ms, data.error_rate, source=data.source)
    path = tmp_path_factory.mktemp("quality") / "model.joblib"
    save_bundle(forest, metadata, *small_context_model(0), path)
    return load_bundle(path)


def fresh_traffic(seed: int) -> tuple[np.ndarray, np.ndarray]:
    events = generate_normal_events(EVENTS_PER_SEED, seed=seed, services=("auth", "payment", "orders"))
    return np.array([e.latency_ms for e in events]), np.array([e.error_rate for e in events])


@pytest.mark.parametrize("seed", FRESH_SEEDS)
def test_flags_at_most_two_percent_of_healthy_traffic(default_model: ModelBundle, seed: int) -> None:
    latency, error = fresh_traffic(seed)
    anomaly, _ = default_model.predict(latency, error)
    assert anomaly.mean() <= 0.02


@pytest.mark.parametrize("seed", FRESH_SEEDS)
def test_catches_latency_spikes(default_model: ModelBundle, seed: int) -> None:
    latency, error = fresh_traffic(seed)
    spiked = latency * np.random.default_rng(seed).uniform(4, 8, len(latency))
    anomaly, _ = default_model.predict(spiked, error)
    assert anomaly.mean() >= 0.95


@pytest.mark.parametrize("seed", FRESH_SEEDS)
def test_catches_error_bursts(default_model: ModelBundle, seed: int) -> None:
    latency, _ = fresh_traffic(seed)
    burst = np.random.default_rng(seed).uniform(0.2, 0.6, len(latency))
    anomaly, _ = default_model.predict(latency, burst)
    assert anomaly.mean() >= 0.95


def test_incidents_score_higher_than_healthy_traffic(default_model: ModelBundle) -> None:
    latency, error = fresh_traffic(FRESH_SEEDS[0])
    _, healthy = default_model.predict(latency, error)
    _, spiked = default_model.predict(latency * 6, error)
    _, burst = default_model.predict(latency, np.full(len(latency), 0.4))
    assert np.median(spiked) > np.quantile(healthy, 0.99)
    assert np.median(burst) > np.quantile(healthy, 0.99)
