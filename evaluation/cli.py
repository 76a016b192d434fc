"""``make eval``: replay labelled scenarios (and optionally a NAB corpus) through the processor's scoring path.

The scenarios and NAB files go through ``ContextualScorer`` in micro-batches of ``--batch`` events, the
composition the processor runs, over ``InProcessModel`` (the context model the ML service serves, in this
process), with state carried across batches as in the processor. ``tests/unit/evaluation/test_path.py`` checks that
the processor's HTTP path reaches the same verdicts.

Alerts are counted as the product pages: without the gate's cool-down, every event above the threshold is an
anomaly, a service's consecutive anomalies are grouped into one incident by ``streaming_detector.incidents``
(the processor's default resolution), and each incident is one alert (``paged``).
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from evaluation.nab import PROFILES, category_scores, load_corpus, score_corpus
from evaluation.quality import ScenarioMetrics, evaluate, overall
from evaluation.rhythms import RATES, RHYTHM_NAMES, RhythmMetrics, build_rhythm, measure
from evaluation.scenarios import SCENARIO_NAMES, build_scenario
from streaming_detector import (
    SENSITIVITY_STEPS,
    AlertGate,
    ContextualScorer,
    GateConfig,
    Score,
    Sensitivity,
    TrainingConfig,
    in_process_scorer,
    train_context_model,
)
from streaming_detector.incidents import IncidentTracker, TimedEvent
from streaming_detector.scorer import Event


class Replay(NamedTuple):
    """Per event of a replayed stream: the alert, whether its service was warm, and the NAB-ranked score."""

    anomaly: np.ndarray  # bool
    score: np.ndarray  # float: higher = more anomalous; 0.0 while the service warms up
    warm: np.ndarray  # bool: scored in its service's context
    alert_score: np.ndarray  # float: the score, 0 while muted (by the cool-down, or in an open incident)
    quiet: np.ndarray  # bool: its service was quiet (judged ``gate.QUIET_RELIEF`` lower)


class ColumnEvent(NamedTuple):
    """An event as the scorer reads it, without the schema's validation (a NAB value may be negative)."""

    event_id: str
    service: str
    latency_ms: float
    error_rate: float
    event_time: float | None = None  # epoch seconds: incidents resolve after a time without alerts


def replay(scorer: ContextualScorer, events: Sequence[Event], batch: int) -> Replay:
    """Feed a stream to the scorer in micro-batches, as the processor does; concatenate the verdicts."""
    verdicts = [verdict for i in range(0, len(events), batch) for verdict in scorer.score(events[i : i + batch])]
    return Replay(
        np.array([v.anomaly for v in verdicts], dtype=bool),
        np.array([v.score for v in verdicts], dtype=np.float64),
        np.array([v.in_context for v in verdicts], dtype=bool),
        np.array([v.alert_score for v in verdicts], dtype=np.float64),
        np.array([v.quiet for v in verdicts], dtype=bool),
    )


def paged(events: Sequence[TimedEvent], output: Replay) -> Replay:
    """The replay's alerts as the processor pages them, from a replay without the cool-down: ``anomaly`` marks
    the events that open an incident (one page per incident), ``alert_score`` is 0 for a service's events
    while its incident is open (its first alert keeps its score, for NAB's threshold sweep). A warm event
    scored close below the threshold keeps its incident open, as in the processor (``HOLD_SCORE``)."""
    incidents = IncidentTracker(idle_resolve_s=math.inf)  # no wall clock: a replay runs faster than real time
    pages = np.zeros(len(events), dtype=bool)
    alert_score = output.score.copy()
    in_context = {"basis": "service"}  # what incidents read of a warm normal event's explanation (the hold)
    rows = zip(events, output.anomaly.tolist(), output.score.tolist(), output.warm.tolist(), strict=True)
    for i, (event, anomaly, score, warm) in enumerate(rows):
        if event.service in incidents.open:
            alert_score[i] = 0.0
        _, records = incidents.observe(
            [(event, Score(anomaly, score, "", explanation=in_context if warm and not anomaly else None))]
        )
        pages[i] = any(record["event"] == "opened" for record in records)
    return output._replace(anomaly=pages, alert_score=alert_score)


def column_events(
    services: Sequence[str],
    latency_ms: Sequence[float],
    error_rate: Sequence[float],
    event_time: Sequence[float | None] | None = None,
) -> list[ColumnEvent]:
    """Events given column-wise, numbered in stream order (with their times, if given)."""
    times = [None] * len(services) if event_time is None else event_time
    return [
        ColumnEvent(str(i), service, latency, error, at)
        for i, (service, latency, error, at) in enumerate(zip(services, latency_ms, error_rate, times, strict=True))
    ]


def run_scenarios(
    forest: Any, metadata: dict[str, Any], names: Sequence[str], seed: int, batch: int
) -> list[ScenarioMetrics]:
    results = []
    for name in names:
        scenario = build_scenario(name, seed)
        events = scenario.events
        output = paged(
            events, replay(in_process_scorer(forest, metadata, cache_events=batch, cooldown=False), events, batch)
        )
        results.append(evaluate(name, events, scenario.incidents, output.anomaly, output.warm))
    return results


def run_rhythms(
    forest: Any, metadata: dict[str, Any], names: Sequence[str], rates: Sequence[str], seed: int, batch: int
) -> tuple[list[RhythmMetrics], dict[str, list[dict[str, Any]]]]:
    """Each rhythm at each rate, one fresh detector each (the scenario is one service), counted in pages as the
    processor sends them; and per rate, the sensitivity curve: false pages per service per day after learning,
    and incidents caught, at each level of ``SENSITIVITY_STEPS`` (the same scores through its threshold)."""
    results = []
    curve: dict[str, list[dict[str, Any]]] = {}
    gate_config = replace(GateConfig.from_metadata(metadata), cooldown_events=0)
    for rate in rates:
        at: dict[str, list[RhythmMetrics]] = {level: [] for level in SENSITIVITY_STEPS}
        for name in names:
            rhythm = build_rhythm(name, RATES[rate], seed)
            events = rhythm.events()
            output = replay(in_process_scorer(forest, metadata, cache_events=batch, cooldown=False), events, batch)
            results.append(measure(rhythm, rate, paged(events, output).anomaly))
            for level in SENSITIVITY_STEPS:
                alerts, _ = AlertGate(gate_config, Sensitivity(level)).decide(
                    [rhythm.name] * len(output.score), output.score, output.warm, output.quiet
                )
                at[level].append(measure(rhythm, rate, paged(events, output._replace(anomaly=alerts)).anomaly))
        curve[rate] = [
            {
                "level": level,
                "threshold": gate_config.threshold + SENSITIVITY_STEPS[level],
                "false_per_day_learned": sum(m.false_after_learning for m in runs)
                / sum(m.days - m.learning_days for m in runs),
                "incidents": sum(m.incidents for m in runs),
                "detected": sum(m.detected for m in runs),
            }
            for level, runs in at.items()
        ]
    return results, curve


def _rhythm_row(m: RhythmMetrics) -> str:
    delay = "-" if math.isnan(m.mean_delay_s) else f"{m.mean_delay_s / 60:.1f}"
    return (
        f"{m.name:<20} {m.rate:>6} {m.days:>4.0f} {m.events:>7} {m.incidents:>5} {m.detected:>5} {m.alerts:>6} "
        f"{m.false_alerts:>5} {m.false_per_day:>6.2f} {m.false_per_day_learned:>7.2f} {m.f1:>6.3f} {delay:>7}"
    )


def run_nab(forest: Any, metadata: dict[str, Any], path: Path, batch: int) -> dict[str, Any]:
    """NAB's three profiles for the detector: one fresh detector per file (value = latency_ms, errors 0).

    Scored on the full corpus and on its two halves (files at even / odd positions of the labels file),
    the hold-out split used when tuning: decide on one half, confirm on the other. ``verdicts``: the same
    profiles on the published verdicts (``anomaly``, 1 or 0, at the shipped threshold and cool-down): the
    figure as a user gets it, whereas NAB's own sweep picks the best threshold for the corpus.
    """
    corpus = load_corpus(path)
    scores = {}
    verdicts = {}
    for k, series in enumerate(corpus, 1):
        values = series.values.tolist()
        times = series.timestamps.astype("datetime64[s]").astype(np.int64).astype(np.float64).tolist()
        events = column_events([series.service] * len(values), values, [0.0] * len(values), times)
        published = replay(in_process_scorer(forest, metadata, cache_events=batch, cooldown=False), events, batch)
        output = paged(events, published)
        scores[series.name] = output.alert_score
        verdicts[series.name] = published.anomaly.astype(np.float64)  # every alert, as on `predictions`
        if k % 10 == 0:
            print(f"  NAB: {k}/{len(corpus)} files scored", flush=True)
    parts = {"full": corpus, "half_even": corpus[0::2], "half_odd": corpus[1::2]}
    results = {
        part: {
            name: {
                "score": r.normalised,
                "threshold": r.threshold,
                "raw": r.raw_score,
                "null": r.null_score,
                "perfect": r.perfect_score,
            }
            for name, r in score_corpus(files, scores).items()
        }
        for part, files in parts.items()
    }
    standard = PROFILES[0]
    categories = category_scores(corpus, scores, results["full"][standard.name]["threshold"], standard)
    as_published = {name: r.normalised for name, r in score_corpus(corpus, verdicts).items()}
    return {**results, "categories_standard": categories, "verdicts": as_published}


TABLE_HEADER = (
    f"{'scenario':<16} {'events':>7} {'incid':>5} {'found':>5} {'alerts':>6} {'true':>5} {'false':>5} "
    f"{'prec':>6} {'recall':>6} {'F1':>6} {'FPR%':>7} {'false/h':>7} {'false/d':>7} {'delay':>6}"
)
TABLE_LEGEND = (
    "incid: incidents injected; found: incidents with at least one alert; alerts = pages, as the processor sends\n"
    "  them: one per incident it opens (a service's consecutive anomalies, resolved after 10 normal events and\n"
    "  20 s); true (on an injected incident's events; a slow drift that keeps rising past a resolution may page\n"
    "  again) + false (on healthy events).\n"
    "prec = true/alerts, recall = found/incid, F1 their harmonic mean ('-' where a scenario has no incident).\n"
    "FPR% = false alerts per 100 healthy events; false/h, false/d = false alerts an hour / a day for one service\n"
    "  sending 1 event/s (FPR x 3,600 / x 86,400); delay = events of the service from an incident's start to\n"
    "  its first alert. Every alert outside an incident's events is false: no grace period after an incident."
)


def _row(m: ScenarioMetrics) -> str:
    delay = "-" if math.isnan(m.mean_delay) else f"{m.mean_delay:.1f}"
    # Without incidents, precision and recall say nothing: the false-alert rates are the figures.
    quality = f"{m.precision:>6.3f} {m.recall:>6.3f} {m.f1:>6.3f}" if m.incidents else f"{'-':>6} {'-':>6} {'-':>6}"
    fpr = m.false_positive_rate
    return (
        f"{m.name:<16} {m.events:>7} {m.incidents:>5} {m.detected:>5} {m.alerts:>6} {m.true_alerts:>5} "
        f"{m.false_alerts:>5} {quality} {100 * fpr:>7.3f} {fpr * 3600:>7.2f} {fpr * 86400:>7.1f} {delay:>6}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nab", type=Path, help="a NAB-layout folder (data/<category>/<file>.csv, labels/...)")
    parser.add_argument(
        "--scenarios", default="all", help=f"all, none, or a comma list of: {', '.join(SCENARIO_NAMES)}"
    )
    parser.add_argument(
        "--seed", default="0", help="seed(s) of the scenario streams, e.g. 0 or 0,1,5,7 (the model is seeded apart)"
    )
    parser.add_argument("--rhythms", default="all", help=f"all, none, or a comma list of: {', '.join(RHYTHM_NAMES)}")
    parser.add_argument(
        "--rates", default=",".join(RATES), help=f"event rates of the rhythm scenarios: {', '.join(RATES)}"
    )
    parser.add_argument("--batch", type=int, default=2000, help="micro-batch size of the replay")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    names = _choice(parser, "scenario", args.scenarios, SCENARIO_NAMES)
    rhythms = _choice(parser, "rhythm", args.rhythms, RHYTHM_NAMES)
    rates = _choice(parser, "rate", args.rates, tuple(RATES))
    started = time.perf_counter()
    print("training the context model on simulated healthy traffic ...", flush=True)
    forest, metadata = train_context_model(TrainingConfig())
    report: dict[str, Any] = {"model": {k: metadata[k] for k in ("threshold", "context", "training")}}
    seeds = [int(s) for s in args.seed.split(",")]
    if names:
        report["scenarios"] = _report_scenarios(forest, metadata, names, seeds, args.batch)
    if rhythms and rates:
        report["rhythms"], report["sensitivity"] = _report_rhythms(
            forest, metadata, rhythms, rates, seeds[0], args.batch
        )
    if args.nab:
        report["nab"] = _report_nab(forest, metadata, args.nab, args.batch)
    elapsed = time.perf_counter() - started
    print(f"\ntotal runtime {elapsed:.1f}s")
    report["runtime_s"] = elapsed
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


def _report_scenarios(
    forest: Any, metadata: dict[str, Any], names: list[str], seeds: list[int], batch: int
) -> list[dict[str, Any]]:
    per_seed = {seed: run_scenarios(forest, metadata, names, seed, batch) for seed in seeds}
    # Per scenario, counts summed over the seeds.
    results = [replace(overall([per_seed[s][k] for s in seeds]), name=name) for k, name in enumerate(names)]
    total = overall(results)
    print(f"\n{TABLE_HEADER}   (seeds {','.join(map(str, seeds))})")
    for m in [*results, total]:
        print(_row(m))
    if len(seeds) > 1:
        for seed, seed_results in per_seed.items():
            print(_row(replace(overall(seed_results), name=f"overall seed {seed}")))
    print(TABLE_LEGEND)
    return [
        {
            **asdict(m),
            "precision": m.precision,
            "recall": m.recall,
            "f1": m.f1,
            "false_positive_rate": m.false_positive_rate,
            "mean_delay": m.mean_delay,
        }
        for m in [*results, total]
    ]


def _report_rhythms(
    forest: Any, metadata: dict[str, Any], rhythms: list[str], rates: list[str], seed: int, batch: int
) -> tuple[list[dict[str, Any]], Any]:
    print("\nrhythm scenarios (one service each, timed by its events; see evaluation/rhythms.py) ...", flush=True)
    rhythm_results, curve = run_rhythms(forest, metadata, rhythms, rates, seed, batch)
    print(
        f"{'rhythm':<20} {'rate':>6} {'days':>4} {'events':>7} {'incid':>5} {'found':>5} {'alerts':>6} "
        f"{'false':>5} {'f/day':>6} {'learned':>7} {'F1':>6} {'delay':>7}   (seed {seed})"
    )
    for rhythm in rhythm_results:
        print(_rhythm_row(rhythm))
    print("(alerts = pages, one per incident opened; f/day: false pages per day over the whole stream;")
    print(" learned: per day after the learning period, 2 days, 15 for the weekly pattern; delay: minutes from")
    print(" an incident's start to its first page)")
    print(
        "sensitivity (SENSITIVITY / SENSITIVITY_BY_SERVICE): false pages per service per day after learning,"
        f" summed over the rhythms (incidents caught), by level and its threshold in nats (medium: the model's"
        f" {metadata['threshold']:g})"
    )
    for rate, points in curve.items():
        cells = "  ".join(
            f"{p['level']} {p['threshold']:g}: {p['false_per_day_learned']:.2f}"
            f" ({p['detected']:.0f}/{p['incidents']:.0f})"
            for p in points
        )
        print(f"  {rate:>6}  {cells}")
    rows = [
        {
            **asdict(r),
            "false_per_day": r.false_per_day,
            "false_per_day_learned": r.false_per_day_learned,
            "f1": r.f1,
            "mean_delay_s": r.mean_delay_s,
        }
        for r in rhythm_results
    ]
    return rows, curve


def _report_nab(forest: Any, metadata: dict[str, Any], folder: Path, batch: int) -> dict[str, Any]:
    print(f"\nscoring NAB corpus at {folder} ...", flush=True)
    nab = run_nab(forest, metadata, folder, batch)
    print(f"{'NAB profile':<24} {'full':>6} {'even':>6} {'odd':>6}   (halves: files at even/odd positions)")
    for name, r in nab["full"].items():
        halves = f"{nab['half_even'][name]['score']:6.1f} {nab['half_odd'][name]['score']:6.1f}"
        print(f"NAB {name:<20} {r['score']:6.1f} {halves}   (threshold {r['threshold']:.4f})")
    categories = ", ".join(f"{c} {v:.1f}" for c, v in nab["categories_standard"].items())
    print(f"NAB standard per category at the corpus threshold: {categories}")
    published = ", ".join(f"{name} {value:.1f}" for name, value in nab["verdicts"].items())
    print(f"NAB on the published verdicts (anomaly at the shipped threshold, full corpus): {published}")
    return nab


def _choice(parser: argparse.ArgumentParser, what: str, value: str, known: Sequence[str]) -> list[str]:
    chosen = list(known) if value == "all" else [] if value == "none" else value.split(",")
    unknown = [n for n in chosen if n not in known]
    if unknown:
        parser.error(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


if __name__ == "__main__":
    sys.exit(main())
