"""Sensitivity: a level per service moves its threshold one nat a step, so more sensitive means more pages."""

from typing import Any

import numpy as np
import pytest

from evaluation.cli import paged, replay
from evaluation.rhythms import build_rhythm
from streaming_detector import AlertGate, GateConfig, Sensitivity, in_process_scorer, train_context_model


def test_levels_parse_from_the_settings_text_and_move_the_threshold_in_steps() -> None:
    sensitivity = Sensitivity.parse("low", " payment=high, search = lowest ,")
    gate = AlertGate(GateConfig(threshold=9.0), sensitivity)
    assert [gate.threshold(s) for s in ("auth", "payment", "search")] == [10.0, 8.0, 11.0]
    with pytest.raises(ValueError, match="unknown sensitivity loud"):
        Sensitivity.parse("medium", "payment=loud")
    with pytest.raises(ValueError, match="not service=level"):
        Sensitivity.parse("medium", "payment")


def test_a_more_sensitive_service_alerts_on_lower_scores_and_only_that_service() -> None:
    scores = np.array([7.5, 8.5, 9.5, 10.5, 11.5] * 2)
    services = ["payment"] * 5 + ["search"] * 5
    alerts = {
        level: AlertGate(GateConfig(9.0, cooldown_events=0), Sensitivity("medium", {"payment": level}))
        .decide(services, scores)[0]
        .tolist()
        for level in ("lowest", "medium", "highest")
    }
    assert alerts["lowest"][:5] == [False, False, False, False, True]
    assert alerts["medium"][:5] == [False, False, True, True, True]
    assert alerts["highest"][:5] == [True, True, True, True, True]
    assert alerts["lowest"][5:] == alerts["medium"][5:] == alerts["highest"][5:]  # search keeps medium


@pytest.fixture(scope="module")
def model() -> tuple[Any, dict[str, Any]]:
    return train_context_model()


def test_pages_on_a_daily_rhythm_rise_with_sensitivity_and_the_incidents_stay_caught(model) -> None:
    rhythm = build_rhythm("busy_hour_incident", 300.0, seed=0)
    events = rhythm.events()
    pages = {}
    for level in ("lowest", "medium", "highest"):
        scorer = in_process_scorer(*model, cache_events=2000, cooldown=False, sensitivity=Sensitivity(level))
        pages[level] = paged(events, replay(scorer, events, 2000)).anomaly
    counts = {level: int(p.sum()) for level, p in pages.items()}
    caught = {level: sum(bool(p[i.start : i.stop].any()) for i in rhythm.incidents) for level, p in pages.items()}
    assert counts["lowest"] <= counts["medium"] < counts["highest"], counts
    assert caught["lowest"] <= caught["medium"] == caught["highest"] == len(rhythm.incidents), caught
