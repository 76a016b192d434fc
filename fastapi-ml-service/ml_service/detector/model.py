"""The IsolationForest on context features: training, and the streaming detector the processor calls."""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from log_simulator.profiles import NormalProfile
from sklearn.ensemble import IsolationForest

from eventbus import LogEvent
from ml_service.detector.context import FEATURES, ContextConfig, ContextTracker


@dataclass(frozen=True)
class TrainingConfig:
    """How the forest is trained and its threshold chosen; one configuration for every service."""

    services: int = 48  # simulated services, baselines spread from 10 ms to 5 s
    events_per_service: int = 2500
    n_estimators: int = 100
    max_samples: int = 512
    threshold_quantile: float = 0.9999  # of the forest's score on the training traffic
    threshold_margin: float = 0.0  # added to that quantile: flag only clearly unusual context
    range_quantile: float = 0.001  # the healthy range of each feature: its 0.1% .. 99.9% quantiles
    excess_weight: float = 0.5  # weight of the log-excess beyond the healthy range, added to the forest score
    cooldown_events: int = 120  # after an alert, this many events of the same service raise no new alert
    seed: int = 0


class DetectorOutput(NamedTuple):
    """Per event: the alert, the score behind it, whether the service was warm, and whether an alert was muted."""

    anomaly: np.ndarray  # bool: raise an alert for this event
    score: np.ndarray  # float: higher = more anomalous; 0.0 while the service warms up
    warm: np.ndarray  # bool: the service had enough history for its context to be trusted
    suppressed: np.ndarray  # bool: in the cool-down after an alert of the same service

    @property
    def alert_score(self) -> np.ndarray:
        """The score with the cool-down applied (0 when muted): what NAB's threshold sweep ranks."""
        return np.where(self.suppressed, 0.0, self.score)


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

    The metadata holds everything ``ContextDetector.from_metadata`` needs besides the forest (threshold,
    context configuration, cool-down) and a summary of the training data.
    """
    training = training or TrainingConfig()
    context = context or ContextConfig()
    services, latency, error = normal_training_stream(training)
    features, warm = ContextTracker(context).features(services, latency, error)
    matrix = features[warm]
    forest = IsolationForest(
        n_estimators=training.n_estimators,
        max_samples=min(training.max_samples, len(matrix)),
        random_state=training.seed,
        n_jobs=1,
    ).fit(matrix)
    # The threshold comes from the whole detector replayed on healthy traffic it has not seen (another
    # seed): the highest scores normal traffic reaches, plus a margin.
    low = np.quantile(matrix, training.range_quantile, axis=0)
    high = np.quantile(matrix, 1.0 - training.range_quantile, axis=0)
    detector = ContextDetector(
        forest,
        math.inf,
        context=context,
        cooldown_events=0,
        feature_range=(low, high),
        excess_weight=training.excess_weight,
    )
    held_out = normal_training_stream(replace(training, seed=training.seed + 1))
    output = detector.score_arrays(*held_out)
    final = output.score[output.warm]
    threshold = float(np.quantile(final, training.threshold_quantile)) + training.threshold_margin
    metadata = {
        "kind": "context-iforest",
        "trained_at": datetime.now(UTC).isoformat(),
        "features": list(FEATURES),
        "threshold": threshold,
        "context": asdict(context),
        "training": asdict(training),
        "feature_low": low.tolist(),
        "feature_high": high.tolist(),
        "training_rows": int(len(matrix)),
        "training_flag_rate": float(np.mean(final > threshold)),
        "feature_summary": {
            name: {
                "mean": float(matrix[:, k].mean()),
                "std": float(matrix[:, k].std()),
                "min": float(matrix[:, k].min()),
                "max": float(matrix[:, k].max()),
            }
            for k, name in enumerate(FEATURES)
        },
    }
    return forest, metadata


class ContextDetector:
    """Scores events in their service's context with the IsolationForest, then applies the alert cool-down.

    The state (a ``ContextTracker``) lives in this object: one detector per consumer of a partition set.
    """

    def __init__(
        self,
        forest: IsolationForest,
        threshold: float,
        *,
        context: ContextConfig | None = None,
        cooldown_events: int = TrainingConfig.cooldown_events,
        feature_range: tuple[np.ndarray, np.ndarray] | None = None,
        excess_weight: float = TrainingConfig.excess_weight,
    ) -> None:
        self.forest = forest
        self.feature_range = feature_range
        self.excess_weight = excess_weight
        self.threshold = threshold
        self.cooldown_events = cooldown_events
        self.tracker = ContextTracker(context)

    @classmethod
    def from_metadata(cls, forest: IsolationForest, metadata: dict[str, Any]) -> "ContextDetector":
        return cls(
            forest,
            float(metadata["threshold"]),
            context=ContextConfig(**metadata["context"]),
            cooldown_events=int(metadata["training"]["cooldown_events"]),
            feature_range=(np.array(metadata["feature_low"]), np.array(metadata["feature_high"])),
            excess_weight=float(metadata["training"]["excess_weight"]),
        )

    def score_arrays(
        self,
        services: Sequence[str],
        latency_ms: Sequence[float] | np.ndarray,
        error_rate: Sequence[float] | np.ndarray,
    ) -> DetectorOutput:
        """Score a micro-batch given column-wise, in stream order, and learn it (one forest call)."""
        features, warm = self.tracker.features(services, latency_ms, error_rate)
        forest_score = np.zeros(len(warm), dtype=np.float64)
        if warm.any():
            forest_score[warm] = self.combined_score(features[warm])
        score, anomaly, suppressed = self._alerts(services, forest_score, warm)
        return DetectorOutput(anomaly, score, warm, suppressed)

    def combined_score(self, features: np.ndarray) -> np.ndarray:
        """The forest's score, plus how far the most extreme feature lies beyond what healthy traffic showed.

        An IsolationForest cannot rank points outside its training range: a 5x and a 50x spike land in the
        same leaf. The excess (in units of the healthy range, log-compressed) breaks that tie; inside the
        healthy range it is zero and the forest alone decides.
        """
        forest_score = -self.forest.score_samples(features)
        if self.feature_range is None:
            return forest_score
        low, high = self.feature_range
        span = high - low
        excess = np.maximum((features - high) / span, (low - features) / span).max(axis=1)
        return forest_score + self.excess_weight * np.log1p(np.clip(excess, 0.0, 1e9))

    def _alerts(
        self, services: Sequence[str], forest_score: np.ndarray, warm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One alert per incident: after an alert, the service's next ``cooldown_events`` events stay quiet."""
        contexts = self.tracker.services
        threshold, cooldown = self.threshold, self.cooldown_events
        n = len(forest_score)
        anomaly = [False] * n
        suppressed = [False] * n
        scores = forest_score.tolist()
        for i in np.flatnonzero(warm).tolist():
            ctx = contexts[services[i]]
            if ctx.cooldown > 0:
                ctx.cooldown -= 1
                suppressed[i] = True
            elif scores[i] > threshold:
                anomaly[i] = True
                ctx.cooldown = cooldown
        return forest_score, np.array(anomaly, dtype=bool), np.array(suppressed, dtype=bool)

    def score_batch(self, events: Sequence[LogEvent]) -> list[tuple[bool, float]]:
        """The processor's call: ``(anomaly, score)`` per event, same order; learns the events."""
        output = self.score_arrays(
            [e.service for e in events], [e.latency_ms for e in events], [e.error_rate for e in events]
        )
        return list(zip(output.anomaly.tolist(), output.score.tolist(), strict=True))
