"""Incidents from verdicts (one per run of alerts, resolved after recovery or silence) and explanations."""

import math
import random
import warnings
from collections import namedtuple
from datetime import UTC, datetime

import pytest
from anomaly_processor.ml_client import Score

from eventbus import Explanation, Incident, LogEvent
from streaming_detector import ContextConfig, ContextTracker
from streaming_detector.explain import PointReference, explain_context, explain_point
from streaming_detector.incidents import IncidentTracker, event_seconds

START = 1_700_000_000.0


def event(service: str, i: int, latency: float = 200.0, error_rate: float = 0.01, step_s: float = 1.0) -> LogEvent:
    stamp = datetime.fromtimestamp(START + i * step_s, UTC).isoformat()
    return LogEvent(
        event_id=f"{service}-{i}", timestamp=stamp, service=service, latency_ms=latency, error_rate=error_rate
    )


def verdicts(service: str, alerts: set[int], count: int, first: int = 0) -> list[tuple[LogEvent, Score]]:
    return [
        (event(service, i), Score(i in alerts, 12.0 + i if i in alerts else 1.0, "v1")) for i in range(first, count)
    ]


def test_a_run_of_alerts_is_one_incident_resolved_after_the_service_is_normal_again() -> None:
    tracker = IncidentTracker(resolve_after_s=30, resolve_events=10)
    # Alerts at 100..160 with normal events among them (a level shift is not every event above the threshold).
    alerts = {i for i in range(100, 161) if i % 7 != 3}
    head, early = tracker.observe(verdicts("payment", alerts, 130))
    tail, late = tracker.observe(verdicts("payment", alerts, 300, first=130))
    out, records = head + tail, early + late
    ids = {score.incident_id for _, score in out if score.anomaly}
    assert len(ids) == 1 and None not in ids
    assert all(score.incident_id is None for _, score in out if not score.anomaly)
    assert sum(score.anomaly for _, score in out) == len(alerts)  # nothing muted
    # Updated at the end of the first batch; the second batch's alerts are in the resolved record.
    assert [r["event"] for r in records] == ["opened", "updated", "resolved"]
    resolved = Incident.model_validate(records[-1])
    assert resolved.status == "resolved" and resolved.resolution == "recovered"
    assert resolved.alerts == len(alerts)
    assert resolved.started_at == START + 100 and resolved.last_alert_at == START + 160
    assert resolved.resolved_at == START + 190  # 30 s of event time after the last alert
    assert resolved.peak_event_id == "payment-160" and resolved.peak_score == 172.0
    assert tracker.open == {}


def test_services_have_their_own_incidents_and_a_later_run_is_a_new_one() -> None:
    tracker = IncidentTracker(resolve_after_s=30, resolve_events=10)
    _, first = tracker.observe(verdicts("auth", {10, 11}, 100) + verdicts("orders", {20}, 100))
    _, second = tracker.observe(verdicts("auth", {150}, 200, first=100))
    opened = [r for r in first + second if r["event"] == "opened"]
    assert [(r["service"], r["first_event_id"]) for r in opened] == [
        ("auth", "auth-10"),
        ("orders", "orders-20"),
        ("auth", "auth-150"),
    ]
    assert len({r["incident_id"] for r in opened}) == 3


def test_a_redelivered_batch_keeps_its_incident_and_counts_each_alert_once() -> None:
    tracker = IncidentTracker(resolve_after_s=30, resolve_events=10)
    batch = verdicts("auth", {10, 11, 12}, 20)
    first, _ = tracker.observe(batch)
    again, records = tracker.observe(batch)
    assert [s.incident_id for _, s in again] == [s.incident_id for _, s in first]
    assert records == [] and tracker.open["auth"].alerts == 3


def test_a_service_that_stops_sending_has_its_incident_resolved_by_the_wall_clock() -> None:
    now = [100.0]
    tracker = IncidentTracker(resolve_after_s=30, resolve_events=10, idle_resolve_s=60, clock=lambda: now[0])
    tracker.observe(verdicts("auth", {5}, 6))
    now[0] += 59
    assert tracker.expire() == []
    now[0] += 2
    (record,) = tracker.expire()
    assert record["event"] == "resolved" and record["resolution"] == "idle" and record["resolved_at"] == 161.0


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [("2023-11-14T22:13:20+00:00", START), ("2023-11-14T22:13:20Z", START), (START, START), (START * 1000, START)],
)
def test_event_time_is_read_from_the_timestamp(stamp: str | float, seconds: float) -> None:
    e = LogEvent(event_id="x", timestamp=stamp, service="a", latency_ms=1.0, error_rate=0.0)
    assert event_seconds(e) == seconds


def learned_service(events: list[LogEvent]) -> tuple[ContextTracker, list[tuple[float, ...]]]:
    tracker = ContextTracker(ContextConfig(warmup_events=30))
    features, _ = tracker.features(
        [e.service for e in events], [e.latency_ms for e in events], [e.error_rate for e in events]
    )
    return tracker, [tuple(row) for row in features.tolist()]


def test_a_latency_spike_is_explained_with_the_service_s_own_normal() -> None:
    rng = random.Random(3)
    history = [event("payment", i, rng.lognormvariate(5.3, 0.1)) for i in range(400)]  # ~200 ms, 180-245 ms
    tracker, _ = learned_service(history)
    spreads = tracker.spreads({"payment"})
    spike = event("payment", 400, 1480.0)
    features, _ = tracker.features(["payment"], [1480.0], [0.01])
    (why,) = explain_context([spike], [tuple(features[0])], [14.6], spreads, threshold=9.0)
    explanation = Explanation.model_validate(why)
    assert explanation.signal == "latency level" and explanation.observed == 1480.0
    assert 180 < explanation.expected < 230 and 140 < explanation.low < 190 and 210 < explanation.high < 290
    assert explanation.severity == pytest.approx(14.6 / 9.0, abs=1e-3)
    assert explanation.text.startswith("latency 1,480 ms, usually ")


def test_a_replayed_metric_below_zero_is_explained_in_the_tracker_s_space_without_nan() -> None:
    # A replayed metric (NAB's series) may be negative; the tracker learns sign(x)·log1p(|x|) of it.
    Measured = namedtuple("Measured", "service latency_ms error_rate")
    rng = random.Random(5)
    values = [-200.0 + rng.gauss(0, 5) for _ in range(400)] + [-20.0]
    tracker = ContextTracker(ContextConfig(warmup_events=30))
    features, _ = tracker.features(["metric"] * 401, values, [0.0] * 401)
    spreads = tracker.spreads({"metric"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in log1p" on a negative value
        (why,) = explain_context([Measured("metric", -20.0, 0.0)], [tuple(features[-1])], [12.0], spreads, 9.0)
    assert why["signal"] == "latency level"
    assert all(math.isfinite(why[key]) for key in ("observed", "expected", "low", "high"))


def test_an_error_burst_is_explained_as_error_rate() -> None:
    rng = random.Random(4)
    history = [event("auth", i, rng.lognormvariate(5.3, 0.1), rng.uniform(0.0, 0.02)) for i in range(400)]
    tracker, _ = learned_service(history)
    spreads = tracker.spreads({"auth"})
    burst = event("auth", 400, 200.0, 0.6)
    features, _ = tracker.features(["auth"], [200.0], [0.6])
    (why,) = explain_context([burst], [tuple(features[0])], [11.0], spreads, threshold=9.0)
    assert why["signal"] == "error rate" and why["unit"] == "ratio" and why["observed"] == 0.6
    assert why["low"] <= why["expected"] < 0.05 and why["text"].startswith("error rate 60.0%, usually ")


def test_a_warming_service_is_explained_against_the_point_model_s_training_data() -> None:
    reference = PointReference(threshold=0.6, latency_mean=200, latency_std=50, error_mean=0.5, error_std=0.29)
    (why,) = explain_point([event("new", 0, 900.0, 0.5)], [0.72], reference)
    assert why["signal"] == "latency level" and why["basis"] == "all services"
    assert (why["expected"], why["low"], why["high"]) == (200.0, 100.0, 300.0)
    assert why["severity"] == pytest.approx(1.2)
    assert why["text"] == "latency 900 ms, usually 100–300 ms (all services: this one is still warming up)"


def test_alerts_of_a_service_still_warming_up_are_marked_but_open_no_incident() -> None:
    tracker = IncidentTracker()
    why = {"basis": "all services", "severity": 1.2, "signal": "latency level", "text": "latency 900 ms"}
    out, records = tracker.observe([(event("new", 0, 900.0), Score(True, 0.72, "v1", explanation=why))])
    assert out[0][1].anomaly and out[0][1].incident_id is None
    assert records == [] and tracker.open == {}


def test_an_incident_stays_open_while_its_service_scores_close_below_the_threshold() -> None:
    # Seeded: an alert, then 30 events at 80-95% of the threshold (a series hovering just below it), then a
    # second alert, then normal events: one page, not two; normal events (20% of it) then resolve it.
    rng = random.Random(18)
    tracker = IncidentTracker(resolve_after_s=20, resolve_events=10)
    levels = [0.2] * 10 + [1.5] + [rng.uniform(0.8, 0.95) for _ in range(30)] + [1.3] + [0.2] * 40
    batch = [
        (
            event("db", i),
            Score(level > 1.0, 9.0 * level, "v1", explanation={"basis": "service", "severity": level, "signal": "s"}),
        )
        for i, level in enumerate(levels)
    ]
    _, records = tracker.observe(batch)
    assert [r["event"] for r in records] == ["opened", "resolved"]
    assert records[-1]["alerts"] == 2
    # Without the hold, the 30 events between the alerts resolve the first incident and the second alert pages.
    _, records = IncidentTracker(resolve_after_s=20, resolve_events=10, hold_score=math.inf).observe(batch)
    assert [r["event"] for r in records].count("opened") == 2
