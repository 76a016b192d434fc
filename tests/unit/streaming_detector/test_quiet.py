"""A quiet service (its context scores seldom high) alerts half a nat lower; what makes it quiet survives a restart."""

import numpy as np

from evaluation.cli import replay
from evaluation.rhythms import build_rhythm
from streaming_detector import AlertGate, ContextTracker, GateConfig, in_process_scorer, train_context_model
from streaming_detector.gate import CALM, QUIET, QUIET_RELIEF, calm_scores
from streaming_detector.state import MemoryStateStore, decode_state, encode_state


def tracker_with(*services: str) -> ContextTracker:
    tracker = ContextTracker()
    tracker.features(list(services), [200.0] * len(services), [0.0] * len(services))
    return tracker


def calm_and_noisy_scores(count: int) -> tuple[list[str], np.ndarray]:
    """Interleaved: ``calm`` always scores 1 nat, ``noisy`` scores 6 nats one time in ten."""
    scores = np.ones(2 * count)
    scores[1::20] = 6.0
    return ["calm", "noisy"] * count, scores


def test_only_a_quiet_service_alerts_below_the_threshold_and_only_after_enough_scores() -> None:
    tracker = tracker_with("calm", "noisy")
    gate = AlertGate(GateConfig(9.0, cooldown_events=0))
    probe = np.array([8.7, 8.7])
    services, scores = calm_and_noisy_scores(QUIET.min_scores - 1)
    tracker.judge_scores(services, scores, QUIET)
    # 999 scores each: not judged yet, so neither alerts at 8.7 (nor learns from the probe below: judged first)
    early = tracker.judge_scores(["calm", "noisy"], probe, QUIET)
    assert early.tolist() == [False, False]
    assert gate.decide(["calm", "noisy"], probe, quiet=early)[0].tolist() == [False, False]
    quiet = tracker.judge_scores(["calm", "noisy"], probe, QUIET)
    assert quiet.tolist() == [True, False]  # noisy: 10% of its scores above 5 nats
    assert gate.decide(["calm", "noisy"], probe, quiet=quiet)[0].tolist() == [True, False]
    assert gate.thresholds(["calm", "noisy"], quiet) == [9.0 - QUIET_RELIEF, 9.0]
    assert gate.decide(["calm"], np.array([8.4]), quiet=np.array([True]))[0].tolist() == [False]


def test_a_quiet_service_that_turns_noisy_loses_the_lower_threshold() -> None:
    tracker = tracker_with("svc")
    tracker.judge_scores(["svc"] * 1500, np.ones(1500), QUIET)
    assert tracker.judge_scores(["svc"], [1.0], QUIET).tolist() == [True]
    # a share of 5% over ~1,000 scores: a run of 60 high scores is enough, and it is judged event by event
    judged = tracker.judge_scores(["svc"] * 60, np.full(60, 7.0), QUIET)
    assert judged[0] and not judged[-1]
    assert judged.tolist() == sorted(judged.tolist(), reverse=True)  # True until the share crosses, then False


def test_the_share_of_high_scores_survives_a_restart() -> None:
    tracker = tracker_with("svc")
    _, scores = calm_and_noisy_scores(1200)
    tracker.judge_scores(["svc"] * 1200, scores[1::2], QUIET)  # 10% high: not quiet
    restored = ContextTracker()
    restored.restore("svc", decode_state(restored.config, encode_state(tracker.config, tracker.export("svc"))))
    after = np.ones(800)  # calm from now on: the share falls below 5% after a few hundred scores
    a, b = tracker.judge_scores(["svc"] * 800, after, QUIET), restored.judge_scores(["svc"] * 800, after, QUIET)
    assert np.array_equal(a, b) and not a[0] and a[-1]


def test_a_flat_service_with_a_nightly_job_becomes_quiet_and_a_restored_scorer_agrees() -> None:
    forest, metadata = train_context_model()
    events = build_rhythm("nightly_job", 300.0, seed=0).events()  # six days at one event per 5 minutes
    whole = replay(in_process_scorer(forest, metadata, cooldown=False), events, 500)
    scored = np.cumsum(whole.warm)
    assert not whole.quiet[scored <= QUIET.min_scores].any()
    assert whole.quiet[scored > QUIET.min_scores].mean() > 0.9
    half = len(events) // 2 + 300  # after the first 1,000 scores
    first = in_process_scorer(forest, metadata, cooldown=False)
    replay(first, events[:half], 500)
    store = MemoryStateStore()
    data = first.export("nightly_job")
    assert data is not None
    store.put("nightly_job", data)
    second = in_process_scorer(forest, metadata, cooldown=False)
    second.keep_state_in(store, 10)
    rest = replay(second, events[half:], 500)
    assert np.array_equal(rest.quiet, whole.quiet[half:]) and np.array_equal(rest.anomaly, whole.anomaly[half:])


def test_only_a_calm_service_scores_by_the_history_counted_in_occasions() -> None:
    tracker = tracker_with("calm", "noisy")
    services, scores = calm_and_noisy_scores(CALM[1])
    tracker.judge_scores(services, scores, QUIET)
    calm = np.zeros(2, dtype=np.bool_)
    tracker.judge_scores(["calm", "noisy"], [1.0, 1.0], QUIET, CALM, calm)
    assert calm.tolist() == [True, False]  # noisy: 10% of its scores above 5 nats
    # The blend (1 - w) * forest + w * surprise, its surprise 5 nats (the rank) against 14 counted by occasions:
    # w = 0.3 moves the calm service's score 2.7 nats higher, to 9.9 (it pages); the noisy one stays at 7.2.
    model, weight, excess = np.array([7.2, 7.2]), np.array([0.3, 0.3]), np.array([9.0, 9.0])
    np.testing.assert_allclose(calm_scores(model.copy(), model, weight, excess, calm), [9.9, 7.2])
    # never lower than the score already judged (the hour-baseline signal's, say)
    assert calm_scores(np.array([12.0]), model[:1], weight[:1], excess[:1], calm[:1]).tolist() == [12.0]
