"""``ContextualScorer`` against a scripted ML service: features once per event, warm-up, gate, model changes."""

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from anomaly_processor.batch_scoring import score_isolating
from anomaly_processor.errors import ScoringConfigError, ScoringRejectedError, ScoringUnavailableError
from anomaly_processor.ml_client import CONTEXT_DECIMALS, Contexts, HttpScorer, Score
from pydantic import BaseModel

from eventbus import LogEvent
from streaming_detector import ContextConfig, ContextTracker, ContextualScorer
from streaming_detector.gate import QUIET

WARMUP = 5
THRESHOLD = 9.0
COOLDOWN = 3


def model_info(version: str = "iforest-aaa", **context: Any) -> dict[str, Any]:
    config = ContextConfig(**{"warmup_events": WARMUP, **context})
    return {
        "version": version,
        "context": {
            "features": [f"f{k}" for k in range(8)],
            "threshold": THRESHOLD,
            "context": asdict(config),
            "gate": {"threshold": THRESHOLD, "cooldown_events": COOLDOWN},
        },
    }


class Call(BaseModel):
    event_ids: list[str]
    contexts: list[tuple[float, ...] | None]


class ScriptedService(HttpScorer):
    """The ML service's answers without HTTP: context items score ``raw(event)``, others 0.5 (point model)."""

    def __init__(self) -> None:
        super().__init__("http://ml.test")
        self.info = model_info()
        self.version = "iforest-aaa"
        self.calls: list[Call] = []
        self.failures: list[Exception] = []
        self.poison: set[str] = set()  # event ids the service rejects (422)
        self.spike_ids: set[str] = set()  # event ids whose raw context score is above the threshold
        self.info_calls = 0

    def model_info(self) -> dict[str, Any]:
        self.info_calls += 1
        return self.info

    def score(self, events: Sequence[LogEvent], contexts: Contexts | None = None) -> list[Score]:
        contexts = list(contexts) if contexts is not None else [None] * len(events)
        sent = [None if c is None else tuple(c) for c in contexts]
        self.calls.append(Call(event_ids=[e.event_id for e in events], contexts=sent))
        if self.failures:
            raise self.failures.pop(0)
        if any(e.event_id in self.poison for e in events):
            raise ScoringRejectedError(422, "body[0].latency_ms: nope")
        scores = []
        for event, context in zip(events, contexts, strict=True):
            if context is None:
                scores.append(Score(False, 0.5, self.version))
            else:
                raw = 20.0 if event.event_id in self.spike_ids else 1.0
                scores.append(Score(raw > THRESHOLD, raw, self.version))
        return scores


def stream(count: int, service: str = "auth", start: int = 0) -> list[LogEvent]:
    rng = np.random.default_rng(start)
    return [
        LogEvent(
            event_id=f"{service}-{start + i}",
            timestamp="2026-01-01T00:00:00Z",
            service=service,
            latency_ms=float(rng.lognormal(np.log(200), 0.2)),
            error_rate=0.01,
        )
        for i in range(count)
    ]


def reference(
    events: Sequence[LogEvent], unscored: Sequence[LogEvent] = ()
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Features (as sent), warm flags and final state of a fresh tracker fed ``events`` exactly once, and the
    context scores of the warm ones (1 nat, ``ScriptedService``'s answer) judged once, but for ``unscored``."""
    tracker = ContextTracker(ContextConfig(**model_info()["context"]["context"]))
    features, warm = tracker.features(
        [e.service for e in events],
        [e.latency_ms for e in events],
        [e.error_rate for e in events],
        [e.event_time for e in events],
    )
    skipped = {e.event_id for e in unscored}
    judged = [e.service for e, is_warm in zip(events, warm, strict=True) if is_warm and e.event_id not in skipped]
    tracker.judge_scores(judged, np.ones(len(judged)), QUIET)
    return features.round(CONTEXT_DECIMALS), warm, tracker.state_dict()


def sent_contexts(service: ScriptedService) -> dict[str, tuple[float, ...] | None]:
    """The context each event was last sent with."""
    return {i: c for call in service.calls for i, c in zip(call.event_ids, call.contexts, strict=True)}


def test_warming_events_go_without_context_and_warm_ones_with_their_features() -> None:
    service = ScriptedService()
    scorer = ContextualScorer(service)
    events = stream(12)
    scores = scorer.score(events)
    features, warm, _ = reference(events)
    [call] = service.calls
    assert [c is not None for c in call.contexts] == warm.tolist()
    assert warm.tolist() == [False] * WARMUP + [True] * (12 - WARMUP)
    assert all(c is None or len(c) == features.shape[1] for c in call.contexts)
    assert [list(c) for c in call.contexts if c is not None] == features[warm].tolist()
    assert [s.score for s in scores] == [0.5] * WARMUP + [1.0] * (12 - WARMUP)


def test_a_retried_batch_advances_the_state_once_and_sends_the_same_features() -> None:
    service = ScriptedService()
    service.failures = [ScoringUnavailableError("Connection refused"), ScoringUnavailableError("timeout")]
    scorer = ContextualScorer(service)
    events = stream(40)
    for _ in range(2):
        with pytest.raises(ScoringUnavailableError):
            scorer.score(events)
    scores = scorer.score(events)
    assert len(scores) == 40 and len(service.calls) == 3
    assert service.calls[0].contexts == service.calls[1].contexts == service.calls[2].contexts
    assert scorer.state_dict()["tracker"] == reference(events)[2]


def test_a_bisected_batch_gets_each_events_features_from_the_state_before_it_once() -> None:
    service = ScriptedService()
    events = stream(40)
    service.poison = {events[17].event_id, events[31].event_id}
    scorer = ContextualScorer(service)
    scores, rejected = score_isolating(scorer, events)
    assert [index for index, _ in rejected] == [17, 31]
    assert sum(score is not None for score in scores) == 38
    features, warm, state = reference(events, [events[17], events[31]])
    sent = sent_contexts(service)
    for event, row, is_warm in zip(events, features.tolist(), warm.tolist(), strict=True):
        assert (sent[event.event_id] is not None) == is_warm
        if is_warm:
            assert list(sent[event.event_id] or ()) == row
    assert scorer.state_dict()["tracker"] == state


def test_without_the_cool_down_every_event_above_the_threshold_is_an_alert_with_its_raw_score() -> None:
    service = ScriptedService()
    events = stream(30)
    service.spike_ids = {e.event_id for e in events[20:23]} | {events[27].event_id}
    scores = ContextualScorer(service, cooldown=False).score(events)
    flagged = [i for i, s in enumerate(scores) if s.anomaly]
    # The processor's way: nothing mutes 21 and 22 (the model's gate says 3 events), incidents group them.
    assert flagged == [20, 21, 22, 27]
    assert [scores[i].score for i in (20, 21, 22, 27)] == [20.0] * 4
    assert not any(s.muted for s in scores)


def test_with_the_cool_down_the_gate_raises_one_alert_per_incident_and_keeps_the_raw_score() -> None:
    service = ScriptedService()
    events = stream(30)
    service.spike_ids = {e.event_id for e in events[20:23]} | {events[27].event_id}
    scores = ContextualScorer(service).score(events)
    flagged = [i for i, s in enumerate(scores) if s.anomaly]
    # 20 alerts; 21 and 22 are in its cool-down (3 events: 21, 22, 23); 27 is a new incident (28, 29 muted).
    assert flagged == [20, 27]
    assert [i for i, s in enumerate(scores) if s.muted] == [21, 22, 23, 28, 29]
    assert [scores[i].score for i in (20, 21, 22, 27)] == [20.0] * 4


def test_a_redelivered_batch_gets_the_same_verdicts_without_scoring_again() -> None:
    service = ScriptedService()
    events = stream(30)
    service.spike_ids = {events[20].event_id}
    scorer = ContextualScorer(service)
    first = scorer.score(events)
    state = scorer.state_dict()
    again = scorer.score(events)  # e.g. produced but the commit failed: the batch comes back
    assert again == first and first[20].anomaly
    assert len(service.calls) == 1 and scorer.state_dict() == state


def test_services_warm_up_separately() -> None:
    service = ScriptedService()
    scorer = ContextualScorer(service)
    scorer.score(stream(10, "auth"))
    scorer.score(stream(3, "payment"))
    last = service.calls[-1]
    assert last.contexts == [None, None, None]


def test_a_new_model_version_is_fetched_and_a_changed_context_config_restarts_the_warm_up() -> None:
    service = ScriptedService()
    scorer = ContextualScorer(service)
    scorer.score(stream(10))
    assert service.info_calls == 1
    service.version = "iforest-bbb"
    service.info = model_info("iforest-bbb")  # same context configuration: the state is kept
    scorer.score(stream(2, start=10))
    assert service.info_calls == 2 and scorer.spec is not None and scorer.spec.version == "iforest-bbb"
    assert scorer.state_dict()["tracker"]["services"]["auth"]["count"] == 12
    service.version = "iforest-ccc"
    service.info = model_info("iforest-ccc", warmup_events=WARMUP + 1)
    scorer.score(stream(2, start=12))
    scorer.score(stream(2, start=14))
    assert scorer.state_dict()["tracker"]["services"]["auth"]["count"] == 2  # rebuilt: warming up again
    assert service.calls[-1].contexts == [None, None]


def test_a_rejection_caused_by_a_model_change_is_retried_not_dead_lettered() -> None:
    service = ScriptedService()
    scorer = ContextualScorer(service)
    scorer.score(stream(10))
    service.failures = [ScoringRejectedError(422, "body[0].context: should have 9 features, got 8")]
    service.info = model_info("iforest-new")
    with pytest.raises(ScoringUnavailableError, match="changed its model"):
        scorer.score(stream(2, start=10))
    # Same model: the rejection is the data's, and the pipeline isolates it.
    service.failures = [ScoringRejectedError(422, "body[0].latency_ms: nope")]
    with pytest.raises(ScoringRejectedError):
        scorer.score(stream(2, start=20))


def test_a_service_without_a_context_model_is_a_configuration_error() -> None:
    service = ScriptedService()
    service.info = {"version": "iforest-old", "threshold": 0.6}
    with pytest.raises(ScoringConfigError, match="CONTEXT=0"):
        ContextualScorer(service).score(stream(1))


def test_model_description_is_fetched_again_while_the_service_is_down() -> None:
    class DownThenUp(ScriptedService):
        def model_info(self) -> dict[str, Any]:
            self.info_calls += 1
            if self.info_calls == 1:
                raise ScoringUnavailableError("Connection refused")
            return self.info

    service = DownThenUp()
    scorer = ContextualScorer(service)
    with pytest.raises(ScoringUnavailableError):
        scorer.score(stream(3))
    assert len(scorer.score(stream(3))) == 3 and service.info_calls == 2


def test_the_cache_is_bounded() -> None:
    service = ScriptedService()
    scorer = ContextualScorer(service, cache_events=50)
    for start in range(0, 200, 20):
        scorer.score(stream(20, start=start))
    assert len(scorer._contexts) == len(scorer._verdicts) == 50
