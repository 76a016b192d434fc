"""A service's detector state as bytes: restored, moved out of memory and back, it scores as if never touched."""

import logging
from dataclasses import replace

import numpy as np
import pytest

from evaluation.cli import replay
from evaluation.scenarios import build_scenario
from streaming_detector import ContextConfig, ContextTracker, in_process_scorer, train_context_model
from streaming_detector.state import MemoryStateStore, StateMismatchError, decode_state, encode_state


@pytest.fixture(scope="module")
def model():
    return train_context_model()


@pytest.fixture(scope="module")
def events():
    # several services, one with incidents, long enough that histories pass min_history
    return build_scenario("level_shifts", 3, scale=0.5).events


def scorer_with(model, store=None, max_services=None):
    forest, metadata = model
    scorer = in_process_scorer(forest, metadata, cooldown=False)  # as the processor: incidents, no cool-down
    if store is not None:
        scorer.memory.keep_in(store, max_services)
    return scorer


def assert_same(a, b) -> None:
    assert len(a.score) == len(b.score) > 0
    np.testing.assert_allclose(a.score, b.score, rtol=0, atol=1e-9)
    assert np.array_equal(a.anomaly, b.anomaly) and np.array_equal(a.warm, b.warm)


def test_restored_services_score_the_rest_of_the_stream_as_the_original(model, events) -> None:
    half = len(events) // 2
    original = scorer_with(model)
    replay(original, events[:half], 200)
    store = MemoryStateStore()
    services = {e.service for e in events[:half]}
    for service in services:
        data = original.export(service)
        assert data is not None
        store.put(service, data)
    restored = scorer_with(model, store)
    expected = replay(original, events[half:], 200)
    got = replay(restored, events[half:], 200)
    assert_same(expected, got)
    assert got.warm.all(), "restored services should not warm up again"


def test_a_service_with_a_full_history_round_trips_bit_for_bit() -> None:
    config = replace(ContextConfig(), history=200, min_history=50)
    tracker = ContextTracker(config)
    rng = np.random.default_rng(1)
    times = 1.7e9 + 600.0 * np.arange(1000)  # an event every 10 minutes: a week of hourly maxima
    tracker.features(["a"] * 700, rng.lognormal(5, 0.3, 700), rng.random(700) * 0.05, times[:700].tolist())
    arrays = decode_state(config, encode_state(config, tracker.export("a")))
    assert len(arrays.days) == 6  # 4.9 days, over 6 calendar days
    copy = ContextTracker(config)
    copy.features(["b", "a"], [100.0, 1.0], [0.0, 0.0], [times[0], times[0]])  # a slot used before
    copy.remove("a")
    copy.restore("a", arrays)
    latency, error = rng.lognormal(5, 0.3, 300), rng.random(300) * 0.05
    a, _ = tracker.features(["a"] * 300, latency, error, times[700:].tolist())
    b, _ = copy.features(["a"] * 300, latency, error, times[700:].tolist())
    assert np.array_equal(a, b)


def test_state_written_under_another_configuration_is_discarded_and_the_service_warms_up(model, events, caplog) -> None:
    other = replace(ContextConfig(), warmup_events=31)
    tracker = ContextTracker(other)
    tracker.features(["api"] * 100, np.full(100, 200.0), np.zeros(100))
    store = MemoryStateStore()
    store.put(events[0].service, encode_state(other, tracker.export("api")))
    with pytest.raises(StateMismatchError):
        decode_state(ContextConfig(), store.states[events[0].service])
    scorer = scorer_with(model, store)
    with caplog.at_level(logging.WARNING):
        first = scorer.score(events[:1])
    assert not first[0].in_context
    assert f"state of service {events[0].service!r} discarded, it warms up again" in caplog.text


def test_memory_is_capped_and_evicted_services_come_back_as_they_left(model, events) -> None:
    unbounded = replay(scorer_with(model), events, 97)
    services = {e.service for e in events}
    assert len(services) >= 3
    capped = scorer_with(model, MemoryStateStore(), max_services=2)
    got = replay(capped, events, 97)
    assert_same(unbounded, got)
    assert capped.services_in_memory() <= 2 and capped.memory.evicted > 0


def test_forgotten_services_are_redone_from_the_stored_state(model, events) -> None:
    """A partition lost and taken back: its services restart from the snapshot, and their redelivered events
    advance the restored state (not the cached features of the first time)."""
    half = len(events) // 2
    scorer = scorer_with(model, MemoryStateStore())
    replay(scorer, events[:half], 200)
    for service in scorer.take_dirty():
        data = scorer.export(service)
        assert data is not None
        scorer.memory.store.put(service, data)  # type: ignore[union-attr]
    first = replay(scorer, events[half:], 200)  # learned, then "lost" before it was committed
    scorer.forget(lambda service: True)
    again = replay(scorer, events[half:], 200)
    assert_same(first, again)


def test_removing_a_service_keeps_the_others_intact() -> None:
    tracker, reference = ContextTracker(), ContextTracker()
    rng = np.random.default_rng(2)
    names = ["a", "b", "c"] * 100
    latency, error = rng.lognormal(4, 0.2, 300), rng.random(300) * 0.02
    tracker.features(names, latency, error)
    reference.features(
        [n for n in names if n != "a"], latency[[n != "a" for n in names]], error[[n != "a" for n in names]]
    )
    tracker.remove("a")
    assert "a" not in tracker and len(tracker) == 2
    a, _ = tracker.features(["b", "c", "a"], [50.0, 60.0, 70.0], [0.0, 0.0, 0.0])
    b, _ = reference.features(["b", "c", "a"], [50.0, 60.0, 70.0], [0.0, 0.0, 0.0])
    assert np.array_equal(a, b)
