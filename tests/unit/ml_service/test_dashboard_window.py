"""The dashboard's window: per-second bucket math, deltas by revision, and memory that stays flat."""

import random

import pytest
from ml_service.dashboard.window import LiveWindow

from eventbus import Verdict

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verdict(
    service: str = "auth",
    latency: float = 100.0,
    error: float = 0.01,
    anomaly: bool = False,
    score: float = -0.1,
    event_id: str = "e",
) -> Verdict:
    return Verdict(
        event_id=event_id,
        timestamp="2024-01-01T00:00:00+00:00",
        service=service,
        latency_ms=latency,
        error_rate=error,
        label="latency_spike" if anomaly else "normal",
        anomaly=anomaly,
        score=score,
        model_version="test",
    )


def rows_by_second(view: dict, service: str) -> dict[int, dict]:
    fields = view["fields"]
    return {row[0]: dict(zip(fields, row, strict=True)) for row in view["series"][service]}


def test_bucket_holds_count_mean_max_and_the_top_scoring_anomaly() -> None:
    clock = FakeClock(T0 + 10)
    window = LiveWindow(window_s=60, clock=clock)
    window.add_verdicts(
        [
            (T0 + 1.1, verdict(latency=100, error=0.0)),
            (T0 + 1.5, verdict(latency=300, error=0.2)),
            (T0 + 1.9, verdict(latency=900, error=0.4, anomaly=True, score=0.3, event_id="weak")),
            (T0 + 1.95, verdict(latency=50, error=0.9, anomaly=True, score=0.8, event_id="strong")),
            (T0 + 2.0, verdict(latency=10, error=0.1)),
        ]
    )
    rows = rows_by_second(window.snapshot(), "auth")

    first = rows[int(T0) + 1]
    assert first["count"] == 4
    assert first["mean_latency_ms"] == pytest.approx((100 + 300 + 900 + 50) / 4)
    assert first["max_latency_ms"] == 900
    assert first["mean_error_rate"] == pytest.approx((0.0 + 0.2 + 0.4 + 0.9) / 4)
    assert first["anomalies"] == 2
    assert (first["anomaly_event_id"], first["anomaly_score"]) == ("strong", 0.8)
    assert (first["anomaly_latency_ms"], first["anomaly_error_rate"]) == (50, 0.9)

    second = rows[int(T0) + 2]
    assert (second["count"], second["anomalies"], second["anomaly_score"]) == (1, 0, None)


def test_counters_rate_anomaly_share_and_dead_letters() -> None:
    clock = FakeClock(T0 + 100.5)
    window = LiveWindow(window_s=60, clock=clock)
    # 10 events per second for the 5 whole seconds before now, one of them an anomaly.
    batch = [
        (T0 + s + i / 10, verdict(anomaly=(s, i) == (97, 3), score=0.5)) for s in range(95, 100) for i in range(10)
    ]
    # Older, still in the window but outside the 5-second rate average.
    batch += [(T0 + 60, verdict(service="cart")) for _ in range(50)]
    window.add_verdicts(batch)
    window.add_dead_lettered([T0 + 99, T0 + 98.2, T0 + 10])  # the last one is out of the window
    window.set_broker_figures(consumer_lag=42, dead_lettered_total=7)

    counters = window.snapshot()["counters"]

    assert counters["events_per_s"] == 10.0
    assert counters["events_in_window"] == 100
    assert counters["anomalies_in_window"] == 1
    assert counters["anomaly_rate"] == pytest.approx(0.01)
    assert counters["dead_lettered_in_window"] == 2
    assert (counters["consumer_lag"], counters["dead_lettered_total"]) == (42, 7)
    assert counters["services"] == 2


def test_records_outside_the_window_and_extra_services_are_counted_not_kept() -> None:
    clock = FakeClock(T0 + 1000)
    window = LiveWindow(window_s=60, max_services=2, clock=clock)
    kept = window.add_verdicts(
        [
            (T0, verdict(service="a")),  # 1000 s old
            (T0 + 5000, verdict(service="a")),  # far future
            (T0 + 999, verdict(service="a")),
            (T0 + 999, verdict(service="b")),
            (T0 + 999, verdict(service="c")),
        ]
    )
    view = window.snapshot()
    assert kept == 2
    assert sorted(view["series"]) == ["a", "b"]
    assert view["counters"]["dropped"] == {"unreadable": 0, "out_of_window": 2, "too_many_services": 1}


def test_delta_carries_only_what_changed_since_the_revision_seen() -> None:
    clock = FakeClock(T0 + 10)
    window = LiveWindow(window_s=60, clock=clock)
    window.add_verdicts([(T0 + 1, verdict(service="auth")), (T0 + 2, verdict(service="cart"))])
    seen = window.snapshot()["rev"]

    assert window.delta(seen)["series"] == {}
    assert window.delta(seen)["anomalies"] == []

    window.add_verdicts([(T0 + 2, verdict(service="cart", anomaly=True, score=0.7, event_id="x1"))])
    update = window.delta(seen)

    assert update["type"] == "update"
    assert list(update["series"]) == ["cart"]
    assert rows_by_second(update, "cart")[int(T0) + 2]["count"] == 2
    assert [a["event_id"] for a in update["anomalies"]] == ["x1"]
    assert window.delta(update["rev"])["series"] == {}


def test_latest_anomalies_are_newest_first_and_bounded() -> None:
    clock = FakeClock(T0 + 10)
    window = LiveWindow(window_s=60, max_anomalies=3, clock=clock)
    for i in range(5):
        window.add_verdicts([(T0 + i, verdict(anomaly=True, score=float(i), event_id=f"a{i}"))])
    anomalies = window.snapshot()["anomalies"]
    assert [a["event_id"] for a in anomalies] == ["a4", "a3", "a2"]
    assert anomalies[0]["service"] == "auth" and anomalies[0]["score"] == 4.0


def test_memory_stays_flat_under_a_long_fast_stream() -> None:
    """Memory depends on services x window length, never on how many events went through."""
    rng = random.Random(7)
    clock = FakeClock(T0)
    window = LiveWindow(window_s=30, max_anomalies=20, clock=clock)
    services = [f"svc-{i}" for i in range(5)]
    template = {s: verdict(service=s) for s in services}
    anomalous = verdict(service="svc-0", anomaly=True, score=0.9)
    for second in range(200):
        clock.now = T0 + second + 0.999
        batch = [(T0 + second + i / 2_000, template[services[i % 5]]) for i in range(2_000)]
        batch[rng.randrange(len(batch))] = (T0 + second + 0.5, anomalous)
        window.add_verdicts(batch)
        window.add_dead_lettered([T0 + second + 0.1])
        window.prune()
        # One bucket per service, plus dead letters and totals, per second of the window.
        assert window.bucket_count() <= (len(services) + 2) * (window.window_s + 1)

    view = window.snapshot()
    assert len(view["anomalies"]) == 20
    assert sum(len(rows) for rows in view["series"].values()) <= len(services) * (window.window_s + 1)
    assert view["counters"]["events_per_s"] == pytest.approx(2_000, rel=0.01)
