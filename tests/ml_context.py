"""A small context model for tests: the real trainer on fewer simulated services, cached per seed."""

from functools import cache
from pathlib import Path
from typing import Any

from ml_service.model import save_bundle, train_model
from ml_service.training import simulated_training_data
from sklearn.ensemble import IsolationForest

from streaming_detector import TrainingConfig, train_context_model

# save_model.py options that train the same small context model (a second instead of a minute).
SMALL_CONTEXT_ARGS = ["--context-services", "6", "--context-events-per-service", "400"]


@cache
def small_context_model(seed: int = 0) -> tuple[IsolationForest, dict[str, Any]]:
    """``train_context_model`` on 6 simulated services x 400 events; do not mutate the metadata."""
    return train_context_model(TrainingConfig(services=6, events_per_service=400, seed=seed))


def save_small_bundle(folder: Path, seed: int, rows: int = 3000) -> Path:
    """A model file in ``folder``: the point model on ``rows`` simulated events and the small context model."""
    data = simulated_training_data(rows, seed=seed)
    forest, metadata = train_model(data.latency_ms, data.error_rate, source=data.source, seed=seed)
    path = folder / "model.joblib"
    save_bundle(forest, metadata, *small_context_model(seed), path)
    return path
