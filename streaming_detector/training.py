"""Training the context model: the IsolationForest on context features of simulated healthy services."""

import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from streaming_detector.forest import ContextModel
from streaming_detector.profiles import NormalProfile
from streaming_detector.tracker import CONTEXT_FEATURES, FOREST_FEATURES, ContextConfig, ContextTracker


@dataclass(frozen=True)
class TrainingConfig:
    """How the forest is trained and its threshold chosen; one configuration for every service."""

    services: int = 48  # simulated services, baselines spread from 10 ms to 5 s
    events_per_service: int = 2500
    n_estimators: int = 50  # as good as 100 on the scenarios and NAB, half the scoring cost
    max_samples: int = 512
    # Scores are surprisals in nats, so the threshold is one: a forest score this far into the healthy tail,
    # or a signal this rare in the service's own history (~1 in 8,000), or a blend of both.
    threshold: float = 9.0
    forest_cap: float = 12.0  # most nats the forest alone contributes (see ``ContextModel``)
    range_quantile: float = 0.001  # the healthy range of each feature: its 0.1% .. 99.9% quantiles
    excess_weight: float = 0.5  # weight of the log-excess beyond the healthy range, added to the forest score
    cooldown_events: int = 120  # after an alert, this many events of the same service raise no new alert
    seed: int = 0


def training_profiles(count: int, seed: int) -> list[NormalProfile]:
    """``count`` healthy profiles with baselines from 10 ms to 5 s and different spreads and error rates."""
    rng = np.random.default_rng(seed)
    medians = np.exp(rng.uniform(math.log(10.0), math.log(5000.0), count))
    sigmas = rng.uniform(0.08, 0.6, count)
    error_means = np.exp(rng.uniform(math.log(0.0005), math.log(0.05), count))
    concentration = 400.0
    return [
        NormalProfile(
            latency_median_ms=float(m),
            latency_sigma=float(s),
            error_alpha=float(e * concentration),
            error_beta=float((1 - e) * concentration),
        )
        for m, s, e in zip(medians, sigmas, error_means, strict=True)
    ]


def normal_training_stream(config: TrainingConfig) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Interleaved healthy traffic of ``config.services`` simulated services (the simulator's own profile)."""
    rng = np.random.default_rng(config.seed)
    profiles = training_profiles(config.services, config.seed)
    per = config.events_per_service
    latency = np.empty((per, len(profiles)))
    error = np.empty((per, len(profiles)))
    for j, profile in enumerate(profiles):
        latency[:, j], error[:, j] = profile.draw(rng, per)
    names = [f"train-{j}" for j in range(len(profiles))] * per
    return names, latency.ravel(), error.ravel()


def train_context_model(
    training: TrainingConfig | None = None, context: ContextConfig | None = None
) -> tuple[IsolationForest, dict[str, Any]]:
    """Fit the forest on context features of healthy traffic, deterministically; return it with its metadata.

    The metadata holds everything ``InProcessModel`` needs besides the forest (threshold,
    context configuration, cool-down) and a summary of the training data.
    """
    training = training or TrainingConfig()
    context = context or ContextConfig()
    width = len(FOREST_FEATURES)
    services, latency, error = normal_training_stream(training)
    vectors, warm = ContextTracker(context).features(services, latency, error)
    matrix = vectors[warm][:, :width]
    forest = IsolationForest(
        n_estimators=training.n_estimators,
        max_samples=min(training.max_samples, len(matrix)),
        random_state=training.seed,
        n_jobs=1,
    ).fit(matrix)
    low = np.quantile(matrix, training.range_quantile, axis=0)
    high = np.quantile(matrix, 1.0 - training.range_quantile, axis=0)
    # The forest's score is put in nats by its tail on healthy traffic it has not seen (another seed).
    held_out = normal_training_stream(replace(training, seed=training.seed + 1))
    held_vectors, held_warm = ContextTracker(context).features(*held_out)
    model = ContextModel(forest, (low, high), training.excess_weight, forest_cap=training.forest_cap)
    healthy = model.forest_score(held_vectors[held_warm][:, :width])
    q90 = float(np.quantile(healthy, 0.9))
    calibration = {"q90": q90, "excess": float(healthy[healthy > q90].mean() - q90)}
    model.calibration = (calibration["q90"], calibration["excess"])
    final = model.score(held_vectors[held_warm])
    threshold = training.threshold
    metadata = {
        "kind": "context-iforest",
        "trained_at": datetime.now(UTC).isoformat(),
        "features": list(CONTEXT_FEATURES),
        "forest_features": list(FOREST_FEATURES),
        "threshold": threshold,
        "context": asdict(context),
        "training": asdict(training),
        "feature_low": low.tolist(),
        "feature_high": high.tolist(),
        "forest_calibration": calibration,
        "training_rows": int(len(matrix)),
        "training_flag_rate": float(np.mean(final > threshold)),
        "feature_summary": {
            name: {
                "mean": float(matrix[:, k].mean()),
                "std": float(matrix[:, k].std()),
                "min": float(matrix[:, k].min()),
                "max": float(matrix[:, k].max()),
            }
            for k, name in enumerate(FOREST_FEATURES)
        },
    }
    return forest, metadata
