"""The NAB scorer on tiny hand-made series whose scores can be derived by hand."""

import json
import math

import numpy as np
import pytest

from evaluation.nab import (
    MAX_TP,
    PROFILES,
    Losses,
    NabSeries,
    category_scores,
    load_corpus,
    losses,
    probation_length,
    row_weights,
    score_at_threshold,
    score_corpus,
    sweep,
)

STANDARD = PROFILES[0]


def make_series(name: str, rows: int, windows: list[tuple[int, int]]) -> NabSeries:
    start = np.datetime64("2020-01-01T00:00:00", "s")
    timestamps = start + np.arange(rows) * np.timedelta64(300, "s")
    return NabSeries(name, timestamps, np.zeros(rows), tuple(windows))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert probation_length(100) == 15
    assert probation_length(1001) == 150
    assert probation_length(100_000) == 750


def test_profiles_have_nab_weights() -> None:
    weights = {p.name: (p.tp_weight, p.fp_weight, p.fn_weight) for p in PROFILES}
    assert weights == {
        "standard": (1.0, 0.11, 1.0),
        "reward_low_FP_rate": (1.0, 0.22, 1.0),
        "reward_low_FN_rate": (1.0, 0.11, 2.0),
    }


def test_detection_at_window_start_is_worth_tp_weight_and_at_its_end_almost_nothing() -> None:
    series = make_series("a/x.csv", 200, [(100, 119)])
    weights = row_weights(200, series.windows, STANDARD)
    assert weights[100] == pytest.approx(1.0)
    assert weights[119] == pytest.approx((2 * sigmoid(5 / 20) - 1) / MAX_TP)
    assert weights[110] == pytest.approx((2 * sigmoid(5 * 10 / 20) - 1) / MAX_TP)
    assert np.all(np.diff(weights[100:120]) < 0)  # earlier is better


def test_false_positive_weights_before_and_after_a_window() -> None:
    series = make_series("a/x.csv", 200, [(100, 119)])
    weights = row_weights(200, series.windows, STANDARD)
    assert weights[50] == pytest.approx(-0.11)  # before the first window: full penalty
    # Just after the window the penalty is small, it grows with the distance (width - 1 = 19 rows per unit).
    assert weights[120] == pytest.approx(0.11 * (2 * sigmoid(-5 * 1 / 19) - 1))
    assert weights[130] == pytest.approx(0.11 * (2 * sigmoid(-5 * 11 / 19) - 1))
    assert weights[199] == pytest.approx(-0.11)  # 80 rows = 4.2 units past the window: full penalty


def test_perfect_detector_scores_100_and_null_detector_0() -> None:
    corpus = [make_series("a/x.csv", 200, [(100, 119)]), make_series("a/y.csv", 400, [(150, 179), (300, 329)])]
    perfect = {s.name: np.zeros(len(s.values)) for s in corpus}
    for s in corpus:
        for left, _ in s.windows:
            perfect[s.name][left] = 1.0
    null = {s.name: np.zeros(len(s.values)) for s in corpus}
    for profile in PROFILES:
        assert sweep(corpus, perfect, profile).normalised == pytest.approx(100.0)
        assert sweep(corpus, null, profile).normalised == pytest.approx(0.0)


def test_detector_firing_only_outside_windows_scores_below_zero() -> None:
    corpus = [make_series("a/x.csv", 200, [(100, 119)])]
    scores = np.zeros(200)
    scores[[40, 60, 180]] = 1.0  # after probation (30 rows), never in the window
    result = score_at_threshold(corpus[0], scores, 0.5, STANDARD)
    expected = -1.0 - 0.11 - 0.11 + float(row_weights(200, corpus[0].windows, STANDARD)[180])
    assert result == pytest.approx(expected)
    assert 100 * (result + 1.0) / 2.0 < 0


def test_detections_in_probation_are_ignored() -> None:
    series = make_series("a/x.csv", 200, [(100, 119)])
    scores = np.zeros(200)
    scores[:30] = 1.0  # the whole probation period
    assert score_at_threshold(series, scores, 0.5, STANDARD) == pytest.approx(-1.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    series = make_series("a/x.csv", 200, [(100, 119)])
    scores = np.zeros(200)
    scores[[105, 110, 115]] = 1.0
    weights = row_weights(200, series.windows, STANDARD)
    assert score_at_threshold(series, scores, 0.5, STANDARD) == pytest.approx(weights[105])


def test_sweep_picks_the_best_threshold_and_agrees_with_direct_scoring() -> None:
    rng = np.random.default_rng(3)
    corpus = [make_series(f"a/{i}.csv", 300, [(120 + 10 * i, 149 + 10 * i)]) for i in range(4)]
    scores = {s.name: rng.random(300) for s in corpus}
    for profile in PROFILES:
        result = sweep(corpus, scores, profile)
        candidates = np.unique(np.concatenate(list(scores.values())))
        direct = [sum(score_at_threshold(s, scores[s.name], t, profile) for s in corpus) for t in candidates]
        assert result.raw_score == pytest.approx(max(max(direct), -profile.fn_weight * 4))
        if result.raw_score > -profile.fn_weight * 4:
            total = sum(score_at_threshold(s, scores[s.name], result.threshold, profile) for s in corpus)
            assert total == pytest.approx(result.raw_score)


def test_category_scores_split_the_corpus_at_one_threshold() -> None:
    corpus = [
        make_series("good/x.csv", 200, [(100, 119)]),
        make_series("bad/y.csv", 200, [(100, 119)]),
        make_series("quiet/z.csv", 200, []),
    ]
    scores = {s.name: np.zeros(200) for s in corpus}
    scores["good/x.csv"][100] = 1.0  # the window's first row
    scores["bad/y.csv"][[60, 180]] = 1.0  # two false alarms, the window missed
    scores["quiet/z.csv"][90] = 1.0  # no window: no normalised score of its own
    result = category_scores(corpus, scores, 0.5, STANDARD)
    assert set(result) == {"good", "bad"}
    assert result["good"] == pytest.approx(100.0)
    false_alarms = score_at_threshold(corpus[1], scores["bad/y.csv"], 0.5, STANDARD) + 1.0
    assert false_alarms < 0
    assert result["bad"] == pytest.approx(100.0 * false_alarms / 2.0)


def test_load_corpus_reads_nab_layout(tmp_path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    lines = ["timestamp,value"] + [f"2020-01-01 {h:02d}:{m:02d}:00,{h * 60 + m}" for h in range(5) for m in range(60)]
    (tmp_path / "data" / "cat" / "f.csv").write_text("\n".join(lines) + "\n")
    windows = {"cat/f.csv": [["2020-01-01 02:00:00.000000", "2020-01-01 02:29:00.000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (series,) = load_corpus(tmp_path)
    assert series.service == "f"
    assert len(series.values) == 300 and series.values[-1] == 299.0
    assert series.windows == ((120, 149),)
    scores = np.zeros(300)
    scores[120] = 1.0
    assert score_corpus([series], {series.name: scores})["standard"].normalised == pytest.approx(100.0)


def test_losses_split_what_a_category_misses_pages_late_and_pages_falsely() -> None:
    corpus = [
        make_series("a/late.csv", 200, [(100, 119)]),
        make_series("a/missed.csv", 200, [(100, 119)]),
        make_series("b/perfect.csv", 200, [(100, 119)]),
    ]
    detected = {s.name: np.zeros(200, dtype=bool) for s in corpus}
    detected["a/late.csv"][[10, 110, 115, 150]] = True  # one in probation (free), late, again in it, one false
    detected["b/perfect.csv"][100] = True
    result = losses(corpus, detected, STANDARD)
    weights = row_weights(200, corpus[0].windows, STANDARD)
    unit = 100.0 / (2.0 * 3)  # a perfect detector's 3 windows against the null detector's
    assert result["b"] == Losses(1, 0, 0, 0.0, 0.0, 0.0)
    a = result["a"]
    assert (a.windows, a.missed, a.false_alarms) == (2, 1, 1)
    assert a.missed_points == pytest.approx(2.0 * unit)
    assert a.late_points == pytest.approx((1.0 - weights[110]) * unit)
    assert a.false_points == pytest.approx(-weights[150] * unit) and a.false_points > 0
    pages = {name: rows.astype(float) for name, rows in detected.items()}
    total = score_corpus(corpus, pages)[STANDARD.name].normalised
    assert a.points + result["b"].points == pytest.approx(100.0 - total)
