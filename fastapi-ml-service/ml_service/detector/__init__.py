"""Streaming, per-service anomaly detection: context features + an IsolationForest at the core.

Contract (river-style, vectorised per micro-batch)::

    detector = ContextDetector.from_metadata(forest, metadata)   # or ContextDetector(forest, threshold, ...)
    detector.score_batch(events) -> [(anomaly, score), ...]      # score_one then learn_one, for each event in order

* State is per service (``ContextTracker``: service -> ``ServiceContext``), learned online from the stream
  only: no per-service setting, no prior knowledge of a service. Each event is scored from its service's
  state BEFORE the event (plus the event itself), then learned — so the verdict never depends on the future.
* Features are scale-free (``context.FEATURES``): deviations in the service's own spread, so ONE forest,
  trained once on simulated healthy traffic of many different services, serves a 20 ms and a 2 s service.
* Warm-up: a service's first ``ContextConfig.warmup_events`` events are learned but get ``anomaly=False``,
  ``score=0.0`` (``DetectorOutput.warm`` is False): without history there is no notion of normal for it.
  The stateless point model (``/predict``) remains the answer for one event with no history.
* Alerts: ``anomaly = score > threshold`` unless the service alerted within its last ``cooldown_events``
  events (one alert per incident, not one per event of it); ``score`` itself is never muted.
* State is snapshotted with ``ContextTracker.state_dict()`` / ``load_state_dict()`` (JSON-able).
* Pure code: no Kafka, no HTTP. Not thread-safe: one detector per consumer.
"""

from ml_service.detector.context import FEATURES, ContextConfig, ContextTracker, ServiceContext
from ml_service.detector.model import (
    ContextDetector,
    DetectorOutput,
    TrainingConfig,
    train_context_model,
)

__all__ = [
    "FEATURES",
    "ContextConfig",
    "ContextDetector",
    "ContextTracker",
    "DetectorOutput",
    "ServiceContext",
    "TrainingConfig",
    "train_context_model",
]
