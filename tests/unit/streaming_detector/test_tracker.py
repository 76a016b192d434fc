"""The per-service tracker: each service's context is its own, and a snapshot continues the stream exactly."""

import json

import numpy as np
import pytest

from evaluation.rhythms import DAY, build_rhythm
from streaming_detector import ContextConfig, ContextTracker
from streaming_detector.tracker import CONTEXT_FEATURES, HISTORIES
from tests.conftest import run_in_fresh_python


def stream(service: str, n: int, seed: int, median_ms: float = 40.0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latency = median_ms * np.exp(rng.normal(0.0, 0.3, n))
    latency[n // 2 : n // 2 + 20] *= 6  # an incident, so the history's tail is exercised
    return [service] * n, latency, rng.uniform(0.0, 0.02, n)


def features_in_batches(
    tracker: ContextTracker, services, latency, errors, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    parts = [
        tracker.features(services[i : i + batch], latency[i : i + batch], errors[i : i + batch])
        for i in range(0, len(services), batch)
    ]
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_a_service_context_does_not_depend_on_other_services() -> None:
    alone = features_in_batches(ContextTracker(), *stream("payments", 1500, seed=1), batch=200)
    # The same stream interleaved with 30 other services (more than the tracker's first allocation).
    names, latency, errors = stream("payments", 1500, seed=1)
    mixed_names, mixed_latency, mixed_errors, mine = [], [], [], []
    for i in range(1500):
        other = f"svc-{i % 30}"
        mixed_names += [other, names[i]]
        mixed_latency += [latency[i] * 3 + 100, latency[i]]
        mixed_errors += [0.05, errors[i]]
        mine.append(2 * i + 1)
    rows, warm = features_in_batches(
        ContextTracker(), mixed_names, np.array(mixed_latency), np.array(mixed_errors), 333
    )
    assert np.array_equal(rows[mine], alone[0]) and np.array_equal(warm[mine], alone[1])
    assert alone[1].sum() == 1500 - ContextConfig().warmup_events
    assert rows.shape == (3000, len(CONTEXT_FEATURES))


def test_snapshot_continues_the_stream_exactly_after_the_history_has_wrapped() -> None:
    services, latency, errors = stream("auth", 2600, seed=7)
    latency = np.round(latency)  # ties: equal values enter and leave the sorted history
    times = 1_767_225_600.0 + 300.0 * np.arange(2600)  # one event every 5 minutes: nine days of hourly maxima
    split = 1777
    # 1,775 values learned into a 200-value history: it wrapped eight times, so every new value replaced an old one.
    original = ContextTracker(ContextConfig(history=200))
    original.features(services[:split], latency[:split], errors[:split], times[:split])
    restored = ContextTracker()
    restored.load_state_dict(json.loads(json.dumps(original.state_dict(), allow_nan=False)))
    assert restored.state_dict() == original.state_dict()
    assert len(original.state_dict()["services"]["auth"]["season"]) == 7  # days 0-6 of the stream
    a = original.features(services[split:], latency[split:], errors[split:], times[split:])
    b = restored.features(services[split:], latency[split:], errors[split:], times[split:])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0][:, CONTEXT_FEATURES.index("surprise")].max() > 0.0


def surprise_of_last_event(latency: np.ndarray) -> float:
    rows, _ = ContextTracker().features(["svc"] * len(latency), latency, np.zeros(len(latency)))
    return float(rows[-1, CONTEXT_FEATURES.index("surprise")])


@pytest.mark.parametrize("phase", [100, 101, 102, 103])
def test_a_spike_the_service_makes_routinely_is_not_surprising_but_a_bigger_one_is(phase: int) -> None:
    rng = np.random.default_rng(2)
    latency = 100.0 * np.exp(rng.normal(0.0, 0.05, 4000))
    # The same 10x spike every 300 events (a nightly job, say): 13 of them. At every phase: a history that
    # kept every fourth event never held the spikes at three phases of four, and paged on each of them.
    latency[phase::300] = 1000.0
    # A threshold of 9 nats (the shipped model's) is one event in about 8,000 of healthy traffic.
    assert surprise_of_last_event(np.append(latency, 1000.0)) < 9.0
    assert surprise_of_last_event(np.append(latency, 3000.0)) > 9.0


def test_a_routine_jump_stays_routine_when_the_service_turns_quieter() -> None:
    rng = np.random.default_rng(4)
    noise = np.r_[np.full(6000, 0.2), np.full(3000, 0.03)]  # the noise drops to a seventh after 6,000 events
    latency = 100.0 * np.exp(rng.normal(0.0, 1.0, 9000) * noise)
    starts = np.arange(150, 9000, 301)
    for start in starts:
        latency[start : start + 20] *= 3  # the same 20-event jump every 301 events (a batch job, say)
    rows, _ = ContextTracker().features(["svc"] * 9000, latency, np.zeros(9000))
    surprise = rows[:, CONTEXT_FEATURES.index("surprise")]
    quiet_edges = [edge for start in starts if start > 6000 for edge in (start, start + 20) if edge < 9000]
    assert len(quiet_edges) == 20
    # The jump is as large as ever; only the noise between jumps shrank (a step ranked in a drifting spread
    # rose from 6 to 17 nats over these jumps).
    assert surprise[quiet_edges].max() < 9.0


def test_one_earlier_incident_does_not_make_the_next_one_routine() -> None:
    rng = np.random.default_rng(3)
    latency = 100.0 * np.exp(rng.normal(0.0, 0.1, 4000))
    latency[2000] = 400.0
    assert surprise_of_last_event(np.append(latency, 400.0)) > 9.0


def surprises_of_last_event(latency: np.ndarray) -> tuple[float, float]:
    """The last event's surprise, and its surprise were the service calm (plus ``calm_excess``)."""
    excess = np.zeros(len(latency))
    rows, _ = ContextTracker().features(["svc"] * len(latency), latency, np.zeros(len(latency)), calm_excess=excess)
    surprise = float(rows[-1, CONTEXT_FEATURES.index("surprise")])
    return surprise, surprise + float(excess[-1])


def test_for_a_calm_service_a_spike_stays_news_until_it_recurs_on_several_occasions() -> None:
    rng = np.random.default_rng(2)
    latency = 100.0 * np.exp(rng.normal(0.0, 0.25, 1601))
    latency[300:302] *= 6  # one earlier spike of two events, larger than the one to judge
    latency[600] *= 5
    # Its two values make the second spike routine (its rank, ~5 nats); for a calm service one earlier spike is
    # not a habit, so the history says page (9 nats, the shipped threshold) ...
    surprise, if_calm = surprises_of_last_event(latency[:601])
    assert surprise < 6.0 and if_calm > 9.0
    # ... until the service has made such spikes on four separate occasions.
    for start in (900, 1200, 1400):
        latency[start : start + 2] *= 6
    latency[1600] *= 5
    surprise, if_calm = surprises_of_last_event(latency)
    assert if_calm == surprise < 9.0


def test_history_keeps_the_last_values_in_arrival_order() -> None:
    cfg = ContextConfig(history=50, history_every=1)
    tracker = ContextTracker(cfg)
    tracker.features(*stream("search", 300, seed=3))
    state = tracker.state_dict()["services"]["search"]
    assert state["count"] == 300 and state["learned"] == 298  # the signals exist from the 3rd event on
    assert all(len(values) == 50 for values in state["history"])
    assert len(state["recent"]) == cfg.surprise_window - 1
    _, latency, _ = stream("search", 300, seed=3)
    assert state["recent"] == latency[-(cfg.surprise_window - 1) :].tolist()  # raw values, oldest first


def test_batch_boundaries_do_not_change_the_features() -> None:
    cols = stream("orders", 1200, seed=5)
    whole = features_in_batches(ContextTracker(), *cols, batch=10**6)
    small = features_in_batches(ContextTracker(), *cols, batch=7)
    assert np.array_equal(whole[0], small[0]) and np.array_equal(whole[1], small[1])


def test_the_benchmarks_tracker_without_its_rhythm_state_ignores_event_times_and_keeps_four_signals() -> None:
    # ``rhythm=False`` is what the benchmark's "without the time-of-day state" runs: the tracker as before it.
    services, latency, errors = stream("auth", 2000, seed=8)
    times = 1_767_225_600.0 + 300.0 * np.arange(2000)  # a week at one event every 5 minutes
    plain = ContextTracker(rhythm=False)
    timed = plain.features(services, latency, errors, times)
    untimed = ContextTracker(rhythm=False).features(services, latency, errors)
    assert np.array_equal(timed[0], untimed[0])
    state = plain.export("auth")
    assert state.arrival.shape[0] == HISTORIES - 1 and len(state.days) == 0  # four signals and the run
    assert timed[0][:, CONTEXT_FEATURES.index("surprise")].max() > 9.0  # the incident still stands out


def test_the_hour_baseline_surprisal_speaks_once_the_hour_has_earlier_days_and_only_with_event_times() -> None:
    # What ``gate.hour_scores`` reads: a quiet-hour incident (2.5x at 03:00 on days 3 and 5, one event every 5
    # minutes) far above the hour's usual level, nothing before the hour has a baseline and an earlier day.
    rhythm = build_rhythm("quiet_hour_incident", 300.0, seed=4)
    n = len(rhythm.times)
    services, latency, errors = [rhythm.name] * n, rhythm.latency_ms.tolist(), rhythm.error_rate.tolist()
    timed, untimed = np.zeros(n), np.ones(n)
    ContextTracker().features(services, latency, errors, rhythm.times.tolist(), timed)
    ContextTracker().features(services, latency, errors, None, untimed)
    days = (rhythm.times - rhythm.times[0]) // DAY
    assert timed[days < 2].max() == 0.0 and not untimed.any()
    incidents = np.zeros(n, dtype=bool)
    for incident in rhythm.incidents:
        incidents[incident.start : incident.stop] = True
        assert timed[incident.start : incident.stop].max() > 11.0, incident
    assert timed[~incidents].max() < 9.0


def test_loading_the_compiled_tracker_leaves_its_loop_ready_for_forked_workers() -> None:
    probe = (
        "from streaming_detector import kernels, load_compiled_tracker\n"
        "loops = (kernels.advance_context, kernels.judge_scores)\n"
        "before = [len(loop.signatures) for loop in loops]\n"
        "load_compiled_tracker()\n"
        "print(*before, *(len(loop.signatures) for loop in loops))\n"
    )
    assert run_in_fresh_python(probe).split() == ["0", "0", "1", "1"]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_lasting_drop_the_signals_rate_mildly_stands_out_as_a_run(seed: int) -> None:
    # A daily cycle at one event every 5 minutes; on day 10 the level drops by a quarter for 6 hours. Each event
    # alone stays within what the hour and the history have seen (7.9 and 8.4 nats at most without the run);
    # their run of mild surprisals is new to the service.
    n, rng = 14 * 288, np.random.default_rng(seed)
    times = 1_767_225_600.0 + 300.0 * np.arange(n)
    latency = 40.0 * np.exp(np.sin(2 * np.pi * (times % 86_400) / 86_400) + rng.normal(0.0, 0.1, n))
    start = 10 * 288 + 72
    latency[start : start + 72] *= 0.75
    rows, _ = ContextTracker().features(["svc"] * n, latency, np.zeros(n), times)
    surprise = rows[:, CONTEXT_FEATURES.index("surprise")]
    assert surprise[start : start + 36].max() > 10.0  # within 3 hours
    assert surprise[4 * 288 : start].max() < 8.0  # the learned cycle stays routine
