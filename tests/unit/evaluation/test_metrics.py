"""Scenario metrics on a hand-made stream, and the eval CLI end to end on one small scenario."""

import json

import numpy as np
import pytest

from evaluation.cli import main
from evaluation.quality import evaluate, overall
from evaluation.scenarios import Incident
from eventbus import LogEvent


def event(i: int, service: str, label: str = "normal") -> LogEvent:
    return LogEvent(event_id=str(i), timestamp=float(i), service=service, latency_ms=1.0, error_rate=0.0, label=label)


def test_metrics_count_incidents_alerts_and_delay() -> None:
    # Service a: events 0..9, incident at its events 4..6; service b: healthy, interleaved.
    events = []
    for k in range(10):
        events.append(event(2 * k, "a", "latency_spike" if 4 <= k <= 6 else "normal"))
        events.append(event(2 * k + 1, "b"))
    incidents = [Incident("a", "latency_spike", 4, 3), Incident("b", "error_burst", 20, 2)]
    alerts = np.zeros(20, dtype=bool)
    alerts[2 * 5] = True  # a's 6th event: inside the incident, one event late
    alerts[2 * 8 + 1] = True  # a false alarm on b
    m = evaluate("hand", events, incidents, alerts, np.ones(20, dtype=bool))
    assert (m.incidents, m.detected, m.alerts, m.true_alerts) == (2, 1, 2, 1)
    assert m.delays == (1,)
    assert m.precision == 0.5 and m.recall == 0.5 and m.f1 == 0.5
    assert m.false_positive_rate == pytest.approx(1 / 17)
    assert overall([m, m]).f1 == 0.5


def test_eval_cli_prints_the_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "eval.json"
    args = ["--scenarios", "error_bursts", "--rhythms", "nightly_job", "--rates", "1/5min", "--seed", "3"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "error_bursts" in printed and "overall" in printed and "total runtime" in printed
    assert "nightly_job" in printed and "sensitivity" in printed
    report = json.loads(out.read_text())
    assert report["scenarios"][-1]["name"] == "overall"
    # Alerts are pages: bursts less than a minute apart on one service are one incident (0.75 per alert before).
    assert report["scenarios"][0]["recall"] >= 0.5
    assert report["scenarios"][0]["precision"] >= 0.9
    [nightly] = report["rhythms"]
    assert nightly["rate"] == "1/5min" and nightly["false_per_day_learned"] <= 1.0
    curve = report["sensitivity"]["1/5min"]
    assert [(p["level"], p["threshold"]) for p in curve] == [
        ("lowest", 11.0), ("low", 10.0), ("medium", 9.0), ("high", 8.0), ("highest", 7.0)
    ]  # fmt: skip
    false_pages = [p["false_per_day_learned"] for p in curve]
    assert false_pages == sorted(false_pages) and false_pages[0] < false_pages[-1]  # more sensitive, more pages


def test_a_row_without_incidents_shows_false_alert_rates_not_precision() -> None:
    from evaluation.cli import TABLE_HEADER, _row
    from evaluation.quality import ScenarioMetrics

    normal = ScenarioMetrics("normal", 6000, 0, 0, 1, 0, 6000, 1, ())
    cells = dict(zip(TABLE_HEADER.split(), _row(normal).split(), strict=True))
    assert (cells["prec"], cells["recall"], cells["F1"]) == ("-", "-", "-")
    assert (cells["alerts"], cells["true"], cells["false"]) == ("1", "0", "1")
    assert float(cells["false/d"]) == 14.4  # 1 in 6,000 healthy events, for a service at 1 event/s
    incidents = ScenarioMetrics("slow_drift", 4500, 3, 3, 16, 16, 4000, 0, (70, 80, 85))
    cells = dict(zip(TABLE_HEADER.split(), _row(incidents).split(), strict=True))
    assert (cells["alerts"], cells["true"], cells["false"], cells["prec"]) == ("16", "16", "0", "1.000")
