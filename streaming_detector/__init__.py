"""The streaming detector, per service: context features + an IsolationForest at the core, and an alert gate.

Both processes run it (the processor the tracker and the gate, the ML service the forest); it imports no web
framework and no Kafka client. Its pieces::

    # (a) stateful per service (the processor)
    tracker = ContextTracker(ContextConfig(**metadata["context"]))
    features, warm = tracker.features(services, latency_ms, error_rate)   # (n, len(CONTEXT_FEATURES)), (n,) bool
    gate = AlertGate(GateConfig.from_metadata(metadata))
    anomaly, score = gate.decide(services, raw_scores, warm)               # (n,) bool, (n,) float
    # (b) stateless: the joblib-saved forest + metadata (the ML service)
    raw_scores = ContextModel.from_metadata(forest, metadata).score(features)   # (n,) float, higher = worse
    # (c) composed, over a model client: HTTP in the processor, in process for evaluation and tests
    scorer = ContextualScorer(client)          # client: a ModelClient, e.g. InProcessModel(forest, metadata)
    scorer.score(events) -> [Score(anomaly, score, model_version, in_context, muted, explanation), ...]

* State is per service, learned online from the stream only: no per-service setting, no prior knowledge
  of a service. Each event is scored from its service's state BEFORE the event (plus the event itself),
  then learned — so the verdict never depends on the future. ``state_dict()``/``load_state_dict()`` on the
  tracker, the gate and the scorer give JSON-able snapshots.
* The context vector (``tracker.CONTEXT_FEATURES``) has two parts. The forest's features are scale-free
  deviations in the service's own spread, so ONE forest, trained once on simulated healthy traffic of many
  services, serves a 20 ms and a 2 s service. ``surprise`` is the service's own history speaking: how rare
  this event's signals are among that service's last 4,000 events (tail surprisal, nats), which
  fits any shape of normal (bimodal caches, tweet counts, CPU percentages). Time, not counts: by each
  event's own ``event_time``, a signal the service reached at the same hour on most of the last days (or
  same weekdays) is routine, and a fifth signal measures the distance from that hour's usual level, so a
  daily cycle or a nightly job is routine at any event rate while an incident at the quiet hour is not.
  The score is a blend in nats, ``(1 - w) * forest + w * surprise``, where ``w`` grows from 0 (new service:
  the forest decides) to 0.55 (half after 800 events or one day of event time, whichever comes first):
  the forest alone misreads real series; history alone is fooled by short histories and by repeated
  incidents in a long one (figures in ``docs/tuning.md``). The forest cannot tell the hour, so the fifth
  signal also speaks alone where its hour has a baseline and an earlier day to judge by: the score the gate
  judges is at least that signal's surprisal less ``gate.HOUR_MARGIN`` (1.5 nats; ``gate.hour_scores``).
* Warm-up: a service's first ``ContextConfig.warmup_events`` events are learned but not scored in context
  (``warm`` is False): without history there is no notion of normal for it. The stateless point model
  (``/predict``) answers for them; ``InProcessModel`` answers ``anomaly=False, score=0.0``.
* Alerts: ``anomaly = score > threshold`` unless the service alerted within its last ``cooldown_events``
  events; ``score`` itself is never muted. The processor and ``make eval`` use ``cooldown=False``: every event
  above the threshold is an alert, and ``incidents.IncidentTracker`` groups a service's alerts into incidents
  (one page each). A quiet service (``gate.QUIET``: its context scores seldom above 5 nats, a share the
  tracker keeps per service as the scorer reports them, ``tracker.judge_scores``) alerts half a nat lower; a
  calm one (``gate.CALM``) is scored with its level's spikes routine only once seen on several occasions.
* Recovery after an incident: the baseline learns slowly (~100 events) and an outlier moves it at most
  ``clip_sigmas`` spreads, so a 60–150 event level shift has not become the normal when it ends and the
  return to normal raises no alert. The scenario metrics count every alert outside an incident as false
  (no grace period).
* Not thread-safe: one scorer per consumer.
"""

import importlib
from typing import TYPE_CHECKING, Any

from streaming_detector.errors import (
    ScoringConfigError,
    ScoringError,
    ScoringProtocolError,
    ScoringRejectedError,
    ScoringUnavailableError,
)
from streaming_detector.gate import SENSITIVITY_STEPS, AlertGate, GateConfig, GateOutput, Sensitivity
from streaming_detector.scorer import ContextSpec, ContextualScorer, ModelClient, Score
from streaming_detector.tracker import (
    CONTEXT_FEATURES,
    FOREST_FEATURES,
    ContextConfig,
    ContextTracker,
    load_compiled_tracker,
)

if TYPE_CHECKING:
    from streaming_detector.forest import ContextModel, FlatForest
    from streaming_detector.in_process import InProcessModel, in_process_scorer
    from streaming_detector.training import TrainingConfig, train_context_model

# The processor needs only the tracker, the gate and the scorer (numpy); the forest side imports scikit-learn,
# which costs seconds of start-up, so it is imported on first use.
_LAZY = {
    "ContextModel": "streaming_detector.forest",
    "FlatForest": "streaming_detector.forest",
    "InProcessModel": "streaming_detector.in_process",
    "in_process_scorer": "streaming_detector.in_process",
    "TrainingConfig": "streaming_detector.training",
    "train_context_model": "streaming_detector.training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONTEXT_FEATURES",
    "FOREST_FEATURES",
    "SENSITIVITY_STEPS",
    "AlertGate",
    "ContextConfig",
    "ContextModel",
    "ContextSpec",
    "ContextTracker",
    "ContextualScorer",
    "FlatForest",
    "GateConfig",
    "GateOutput",
    "InProcessModel",
    "ModelClient",
    "Score",
    "Sensitivity",
    "ScoringConfigError",
    "ScoringError",
    "ScoringProtocolError",
    "ScoringRejectedError",
    "ScoringUnavailableError",
    "TrainingConfig",
    "in_process_scorer",
    "load_compiled_tracker",
    "train_context_model",
]
