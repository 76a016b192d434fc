"""Streaming, per-service anomaly detection: context features + an IsolationForest at the core.

Three separable pieces (the processor owns the state, the ML service owns the forest)::

    # (a) processor side, stateful per service
    tracker = ContextTracker(ContextConfig(**metadata["context"]))
    features, warm = tracker.features(services, latency_ms, error_rate)   # (n, len(CONTEXT_FEATURES)), (n,) bool
    gate = AlertGate(GateConfig(metadata["threshold"], metadata["training"]["cooldown_events"]))
    anomaly, score = gate.decide(services, raw_scores, warm)               # (n,) bool, (n,) float
    # (b) service side, stateless: the joblib-saved forest + metadata
    raw_scores = ContextModel.from_metadata(forest, metadata).score(features)   # (n,) float, higher = worse
    # (c) both in one process (eval, tests, a single-process deployment)
    detector = ContextDetector.from_metadata(forest, metadata)
    detector.score_batch(events) -> [(anomaly, score), ...]
    detector.score_arrays(services, latency_ms, error_rate) -> DetectorOutput(anomaly, score, warm, suppressed)

* State is per service, learned online from the stream only: no per-service setting, no prior knowledge
  of a service. Each event is scored from its service's state BEFORE the event (plus the event itself),
  then learned — so the verdict never depends on the future. ``state_dict()``/``load_state_dict()`` on the
  tracker, the gate and the detector give JSON-able snapshots.
* The context vector (``context.CONTEXT_FEATURES``) has two parts. The forest's features are scale-free
  deviations in the service's own spread, so ONE forest, trained once on simulated healthy traffic of many
  services, serves a 20 ms and a 2 s service. ``surprise`` is the service's own history speaking: how rare
  this event's signals are among that service's last 4,000 events (tail surprisal, nats), which
  fits any shape of normal (bimodal caches, tweet counts, CPU percentages). The score is a blend in nats,
  ``(1 - w) * forest + w * surprise``, where ``w`` grows from 0 (new service: the forest decides) to 0.55.
  Measured on the scenarios and NAB: the forest alone misreads real series; history alone is fooled by
  short histories and by repeated incidents in a long one; about half and half holds on both.
* Warm-up: a service's first ``ContextConfig.warmup_events`` events are learned but get ``anomaly=False``,
  ``score=0.0`` (``warm`` is False): without history there is no notion of normal for it.
  The stateless point model (``/predict``) remains the answer for one event with no history.
* Alerts: ``anomaly = score > threshold`` unless the service alerted within its last ``cooldown_events``
  events (one alert per incident, not one per event of it); ``score`` itself is never muted.
* Recovery after an incident: the baseline learns slowly (~100 events) and an outlier moves it at most
  ``clip_sigmas`` spreads, so a 60–150 event level shift has not become the normal when it ends and the
  return to normal raises no alert. The scenario metrics count every alert outside an incident as false
  (no grace period).
* Pure code: no Kafka, no HTTP. Not thread-safe: one detector per consumer.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ml_service.detector.context import FEATURES, ContextConfig, ContextTracker, load_compiled_tracker
from ml_service.detector.gate import AlertGate, GateConfig, GateOutput

if TYPE_CHECKING:
    from ml_service.detector.forest import ContextModel, FlatForest
    from ml_service.detector.model import ContextDetector, DetectorOutput, TrainingConfig, train_context_model

# The processor needs only the tracker and the gate (numpy); the forest side imports scikit-learn, which
# costs seconds of start-up, so it is imported on first use.
_LAZY = {
    "ContextModel": "ml_service.detector.forest",
    "FlatForest": "ml_service.detector.forest",
    "ContextDetector": "ml_service.detector.model",
    "DetectorOutput": "ml_service.detector.model",
    "TrainingConfig": "ml_service.detector.model",
    "train_context_model": "ml_service.detector.model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FEATURES",
    "AlertGate",
    "ContextConfig",
    "ContextDetector",
    "ContextModel",
    "ContextTracker",
    "DetectorOutput",
    "FlatForest",
    "GateConfig",
    "GateOutput",
    "TrainingConfig",
    "load_compiled_tracker",
    "train_context_model",
]
