"""``make eval`` counts alerts as the processor pages them: one per incident, not one per anomalous event."""

import numpy as np

from evaluation.cli import Replay, column_events, paged


def replay_of(anomalous: set[int], count: int, step_s: float = 1.0) -> tuple[list, Replay]:
    """One service, an event every ``step_s`` seconds; the events in ``anomalous`` scored 20, the others 1."""
    events = column_events(["svc"] * count, [200.0] * count, [0.0] * count, [1e9 + i * step_s for i in range(count)])
    score = np.array([20.0 if i in anomalous else 1.0 for i in range(count)])
    return events, Replay(score > 9.0, score, np.ones(count, dtype=bool), score.copy(), np.zeros(count, dtype=bool))


def test_a_level_shift_of_two_hundred_events_pages_once() -> None:
    events, output = replay_of(set(range(100, 300)), 600)
    pages = paged(events, output)
    assert np.flatnonzero(pages.anomaly).tolist() == [100]
    # NAB's sweep ranks the page's score; the rest of the incident, recovery included, is muted.
    assert pages.alert_score[100] == 20.0
    assert not pages.alert_score[101:310].any()
    assert (pages.alert_score[400:] == 1.0).all()  # resolved: 10 normal events and 20 s after the last alert


def test_an_incident_after_the_last_one_resolved_pages_again_and_not_before() -> None:
    events, output = replay_of({100, 115, 300}, 400)  # 115: 15 s after 100, still in its incident
    assert np.flatnonzero(paged(events, output).anomaly).tolist() == [100, 300]


def test_pages_follow_event_time_not_the_replay_speed() -> None:
    # Five-minute steps (a NAB file): 10 normal events are 50 minutes, past the 20 s too.
    events, output = replay_of({100, 112}, 200, step_s=300.0)
    assert np.flatnonzero(paged(events, output).anomaly).tolist() == [100, 112]


def test_warm_events_close_below_the_threshold_keep_the_incident_open_as_in_the_processor() -> None:
    # Scores of 8 nats (the threshold is 9) between two alerts 60 events apart: one page, not two.
    events, output = replay_of({100, 160}, 300)
    score = output.score.copy()
    score[101:160] = 8.0
    assert np.flatnonzero(paged(events, output._replace(score=score)).anomaly).tolist() == [100]
    # Scored by the point model (service warming up), the same events are not held: the old rule, two pages.
    warm = np.ones(300, dtype=bool)
    warm[101:160] = False
    assert np.flatnonzero(paged(events, output._replace(score=score, warm=warm)).anomaly).tolist() == [100, 160]
