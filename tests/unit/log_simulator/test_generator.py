"""The traffic generator: reproducible, labelled as injected, at the asked anomaly rate, per-service options."""

import bisect
import statistics
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from log_simulator.errors import ConfigurationError
from log_simulator.generator import EpisodeRecord, ServiceSpec, TrafficGenerator, parse_services
from log_simulator.scenarios import ERROR_BURST, LATENCY_SPIKE, LEVEL_SHIFT, resolve_kinds

from eventbus import LogEvent, parse_event
from streaming_detector.profiles import ORIGINAL, NormalProfile

# Nearly constant normal traffic (200 ms +-1%, error ~0.5%): an injected anomaly cannot hide in the noise.
STEADY = NormalProfile(latency_median_ms=200.0, latency_sigma=0.01)
START = datetime(2026, 3, 1, tzinfo=UTC)


def fields(event: LogEvent) -> tuple:
    return (event.event_id, event.timestamp, event.service, event.latency_ms, event.error_rate, event.label)


def test_same_seed_same_stream_and_other_seed_another() -> None:
    first = [fields(e) for e in TrafficGenerator(seed=7, start=START).events(2000)]
    again = [fields(e) for e in TrafficGenerator(seed=7, start=START).events(2000)]
    other = [fields(e) for e in TrafficGenerator(seed=8, start=START).events(2000)]
    assert first == again
    assert [f[0] for f in first] != [f[0] for f in other]
    assert [f[3] for f in first] != [f[3] for f in other]


def test_events_are_valid_with_unique_ids_and_utc_timestamps() -> None:
    events = list(TrafficGenerator(anomaly_rate=0.05).events(5000))
    assert len({e.event_id for e in events}) == 5000
    assert {uuid.UUID(e.event_id).version for e in events} == {4}
    assert all(str(uuid.UUID(e.event_id)) == e.event_id for e in events)
    for event in events[:200]:
        assert parse_event(event.to_json()) == event
        assert datetime.fromisoformat(event.timestamp).utcoffset() is not None
        assert datetime.fromisoformat(event.timestamp).utcoffset().total_seconds() == 0
    unseeded_again = TrafficGenerator().next_event()
    assert unseeded_again.event_id not in {e.event_id for e in events}


def test_synthetic_timestamps_step_by_the_interval() -> None:
    events = list(TrafficGenerator(seed=1, start=START, interval_s=0.5).events(3))
    assert [datetime.fromisoformat(e.timestamp) for e in events] == [
        START,
        datetime(2026, 3, 1, 0, 0, 0, 500000, tzinfo=UTC),
        datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC),
    ]


def check_episodes(events: list[LogEvent], episodes: list[EpisodeRecord]) -> None:
    """Each recorded episode labels exactly its service's next ``length`` events, and nothing else is labelled."""
    positions: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        positions.setdefault(event.service, []).append(i)
    expected = {}
    for episode in episodes:
        mine = positions[episode.service]
        first = bisect.bisect_left(mine, episode.first_event)
        assert mine[first] == episode.first_event
        for i in mine[first : first + episode.length]:
            assert i not in expected, "two episodes on one event"
            expected[i] = episode.kind
    assert {i: e.label for i, e in enumerate(events) if e.label != "normal"} == expected


def test_latency_spikes_are_labelled_and_last_a_few_events_of_one_service() -> None:
    gen = TrafficGenerator(seed=3, anomaly_rate=0.02, kinds=["spike"], profile=STEADY, keep_episodes=True)
    events = list(gen.events(20_000))
    spikes = [e for e in events if e.label == LATENCY_SPIKE]
    normal = [e for e in events if e.label == "normal"]
    assert spikes and len(spikes) + len(normal) == len(events)
    assert min(e.latency_ms for e in spikes) >= 4 * 200 * 0.95
    assert max(e.latency_ms for e in spikes) <= 10 * 200 * 1.05
    assert max(e.latency_ms for e in normal) < 200 * 1.1
    assert all(3 <= ep.length <= 6 and ep.kind == LATENCY_SPIKE for ep in gen.stats.episodes)
    check_episodes(events, gen.stats.episodes)


def test_error_bursts_are_labelled() -> None:
    gen = TrafficGenerator(seed=4, anomaly_rate=0.02, kinds=["error_burst"], profile=STEADY, keep_episodes=True)
    events = list(gen.events(20_000))
    bursts = [e for e in events if e.label == ERROR_BURST]
    assert bursts
    assert all(0.2 <= e.error_rate <= 0.8 for e in bursts)
    assert max(e.error_rate for e in events if e.label == "normal") < 0.1
    assert all(3 <= ep.length <= 8 for ep in gen.stats.episodes)
    check_episodes(events, gen.stats.episodes)


def test_level_shifts_last_long_and_move_latency_or_errors() -> None:
    gen = TrafficGenerator(seed=5, anomaly_rate=0.002, kinds=[LEVEL_SHIFT], profile=STEADY, keep_episodes=True)
    events = list(gen.events(30_000))
    shifted = [e for e in events if e.label == LEVEL_SHIFT]
    assert shifted
    assert all(e.latency_ms >= 1.6 * 200 * 0.95 or e.error_rate >= 0.05 for e in shifted)
    assert all(e.latency_ms <= 2.5 * 200 * 1.05 and e.error_rate <= 0.25 for e in shifted)
    assert all(30 <= ep.length <= 300 for ep in gen.stats.episodes)
    check_episodes(events, gen.stats.episodes)


def test_mixed_kinds_never_overlap_on_one_event() -> None:
    gen = TrafficGenerator(seed=11, anomaly_rate=0.05, keep_episodes=True)
    events = list(gen.events(20_000))
    assert {ep.kind for ep in gen.stats.episodes} == {LATENCY_SPIKE, ERROR_BURST, LEVEL_SHIFT}
    check_episodes(events, gen.stats.episodes)


def test_anomaly_rate_is_roughly_the_fraction_of_events_starting_an_anomaly() -> None:
    gen = TrafficGenerator(seed=6, anomaly_rate=0.02, kinds=[LATENCY_SPIKE, ERROR_BURST])
    list(gen.events(20_000))
    started = sum(gen.stats.anomalies_started.values())
    assert 0.75 * 400 <= started <= 1.25 * 400
    assert set(gen.stats.anomalies_started) == {LATENCY_SPIKE, ERROR_BURST}
    assert sum(gen.stats.labels.values()) == 20_000


def test_stats_count_labels_as_emitted() -> None:
    gen = TrafficGenerator(seed=9, anomaly_rate=0.05)
    events = list(gen.events(3000))
    assert gen.stats.labels == Counter(e.label for e in events)
    assert gen.stats.events == 3000


def test_no_anomalies_when_rate_is_zero_or_no_kind_is_chosen() -> None:
    assert {e.label for e in TrafficGenerator(seed=1, anomaly_rate=0.0).events(3000)} == {"normal"}
    assert {e.label for e in TrafficGenerator(seed=1, anomaly_rate=0.5, kinds=[]).events(3000)} == {"normal"}


def test_original_distributions_flag_draws_normal_200_50_and_uniform_errors() -> None:
    normal = [e for e in TrafficGenerator(seed=2, anomaly_rate=0.0, profile=ORIGINAL).events(20_000)]
    latencies = [e.latency_ms for e in normal]
    errors = [e.error_rate for e in normal]
    assert statistics.fmean(latencies) == pytest.approx(200, abs=3)
    assert statistics.stdev(latencies) == pytest.approx(50, abs=3)
    assert statistics.fmean(errors) == pytest.approx(0.5, abs=0.02)
    assert sum(e > 0.9 for e in errors) / len(errors) == pytest.approx(0.1, abs=0.02)
    realistic = [e.error_rate for e in TrafficGenerator(seed=2, anomaly_rate=0.0).events(20_000)]
    assert max(realistic) < 0.1


def test_services_can_have_very_different_baselines() -> None:
    services = [
        ServiceSpec("cache", NormalProfile(latency_median_ms=20)),
        ServiceSpec("batch", NormalProfile(latency_median_ms=3000)),
    ]
    events = list(TrafficGenerator(services, seed=1, anomaly_rate=0.0).events(4000))
    median = {name: statistics.median(e.latency_ms for e in events if e.service == name) for name in ("cache", "batch")}
    assert median["cache"] == pytest.approx(20, rel=0.05)
    assert median["batch"] == pytest.approx(3000, rel=0.05)


def test_weights_set_each_services_share_of_traffic() -> None:
    services = [ServiceSpec("big", weight=3.0), ServiceSpec("small", weight=1.0)]
    counts = Counter(e.service for e in TrafficGenerator(services, seed=1).events(8000))
    assert counts["big"] / 8000 == pytest.approx(0.75, abs=0.03)


def test_slow_drift_moves_the_baseline_and_stays_labelled_normal() -> None:
    services = [ServiceSpec("drifting", STEADY, drift_per_1k=1.0), ServiceSpec("steady", STEADY)]
    events = list(TrafficGenerator(services, seed=1, anomaly_rate=0.0).events(6000))
    drifting = [e.latency_ms for e in events if e.service == "drifting"]
    steady = [e.latency_ms for e in events if e.service == "steady"]
    # Baseline doubles every 1000 events of the service: about x2^2 after ~2000 more of its events.
    growth = statistics.median(drifting[-200:]) / statistics.median(drifting[:200])
    assert 2 ** ((len(drifting) - 200) / 1000) * 0.9 < growth < 2 ** (len(drifting) / 1000) * 1.1
    assert statistics.median(steady[-200:]) == pytest.approx(statistics.median(steady[:200]), rel=0.02)
    assert {e.label for e in events} == {"normal"}


def test_a_service_can_appear_mid_stream() -> None:
    services = [ServiceSpec("auth"), ServiceSpec("newcomer", starts_after=1000)]
    events = list(TrafficGenerator(services, seed=1).events(3000))
    first = next(i for i, e in enumerate(events) if e.service == "newcomer")
    assert first >= 1000
    assert first < 1010  # it takes part from then on (half the traffic)
    assert sum(e.service == "newcomer" for e in events[1000:]) / 2000 == pytest.approx(0.5, abs=0.05)


def test_parse_services_reads_names_and_optional_medians() -> None:
    specs = parse_services("auth, payment:350 ,orders")
    assert [s.name for s in specs] == ["auth", "payment", "orders"]
    assert [s.profile.latency_median_ms for s in specs] == [200.0, 350.0, 200.0]
    for bad in ("", "auth,auth", "auth:fast", "auth:-5"):
        with pytest.raises(ConfigurationError):
            parse_services(bad)
    with pytest.raises(ConfigurationError, match="realistic"):
        parse_services("auth:300", ORIGINAL)


def test_anomaly_kind_names_and_aliases() -> None:
    assert resolve_kinds(["spike", "error_burst", "level_shift", "spike"]) == (LATENCY_SPIKE, ERROR_BURST, LEVEL_SHIFT)
    with pytest.raises(ConfigurationError, match="unknown anomaly kind 'meteor'"):
        resolve_kinds(["meteor"])


def test_generator_refuses_nonsense() -> None:
    with pytest.raises(ConfigurationError):
        TrafficGenerator(anomaly_rate=1.5)
    with pytest.raises(ConfigurationError):
        TrafficGenerator([])
    with pytest.raises(ConfigurationError):
        TrafficGenerator([ServiceSpec("late", starts_after=10)])
