"""``make eval``: replay labelled scenarios (and optionally a NAB corpus) through the processor's scoring path.

The scenarios and NAB files go through ``ContextDetector.score_arrays`` in micro-batches of ``--batch``
events: the tracker, context model and gate the processor's ``ContextualScorer`` runs (tracker and gate in
the processor, the model in the ML service), with state carried across batches as in the processor.
``tests/unit/test_eval_path.py`` checks that the processor's scorer reaches the same verdicts.
"""

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.detector import ContextDetector, DetectorOutput, TrainingConfig, train_context_model
from ml_service.evaluation.metrics import ScenarioMetrics, evaluate, overall
from ml_service.evaluation.nab import PROFILES, category_scores, load_corpus, score_corpus
from ml_service.evaluation.scenarios import SCENARIO_NAMES, build_scenario


def replay(
    detector: ContextDetector, services: Sequence[str], latency: np.ndarray, error: np.ndarray, batch: int
) -> DetectorOutput:
    """Feed a stream to the detector in micro-batches, as the processor does; concatenate the outputs."""
    parts = [
        detector.score_arrays(services[i : i + batch], latency[i : i + batch], error[i : i + batch])
        for i in range(0, len(services), batch)
    ]
    return DetectorOutput(*(np.concatenate([getattr(p, f) for p in parts]) for f in DetectorOutput._fields))


def run_scenarios(
    forest: Any, metadata: dict[str, Any], names: Sequence[str], seed: int, batch: int
) -> list[ScenarioMetrics]:
    results = []
    for name in names:
        scenario = build_scenario(name, seed)
        events = scenario.events
        output = replay(
            ContextDetector.from_metadata(forest, metadata),
            [e.service for e in events],
            np.array([e.latency_ms for e in events]),
            np.array([e.error_rate for e in events]),
            batch,
        )
        results.append(evaluate(name, events, scenario.incidents, output.anomaly, output.warm))
    return results


def run_nab(forest: Any, metadata: dict[str, Any], path: Path, batch: int) -> dict[str, Any]:
    """NAB's three profiles for the detector: one fresh detector per file (value = latency_ms, errors 0).

    Scored on the full corpus and on its two halves (files at even / odd positions of the labels file),
    the hold-out split used when tuning: decide on one half, confirm on the other.
    """
    corpus = load_corpus(path)
    scores = {}
    for k, series in enumerate(corpus, 1):
        output = replay(
            ContextDetector.from_metadata(forest, metadata),
            [series.service] * len(series.values),
            series.values,
            np.zeros(len(series.values)),
            batch,
        )
        scores[series.name] = output.alert_score
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
    return {**results, "categories_standard": categories}


TABLE_HEADER = (
    f"{'scenario':<16} {'events':>7} {'incid':>5} {'found':>5} {'alerts':>6} {'true':>5} {'false':>5} "
    f"{'prec':>6} {'recall':>6} {'F1':>6} {'FPR%':>7} {'false/h':>7} {'false/d':>7} {'delay':>6}"
)
TABLE_LEGEND = (
    "incid: incidents injected; found: incidents with at least one alert; alerts = true (on an incident's events;\n"
    "  one incident may raise several, e.g. a slow drift that keeps rising) + false (on healthy events).\n"
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nab", type=Path, help="a NAB-layout folder (data/<category>/<file>.csv, labels/...)")
    parser.add_argument(
        "--scenarios", default="all", help=f"all, none, or a comma list of: {', '.join(SCENARIO_NAMES)}"
    )
    parser.add_argument(
        "--seed", default="0", help="seed(s) of the scenario streams, e.g. 0 or 0,1,5,7 (the model is seeded apart)"
    )
    parser.add_argument("--batch", type=int, default=2000, help="micro-batch size of the replay")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    names = (
        list(SCENARIO_NAMES)
        if args.scenarios == "all"
        else []
        if args.scenarios == "none"
        else args.scenarios.split(",")
    )
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIO_NAMES)}")
    started = time.perf_counter()
    print("training the context model on simulated healthy traffic ...", flush=True)
    forest, metadata = train_context_model(TrainingConfig())
    report: dict[str, Any] = {"model": {k: metadata[k] for k in ("threshold", "context", "training")}}
    seeds = [int(s) for s in args.seed.split(",")]
    if names:
        per_seed = {seed: run_scenarios(forest, metadata, names, seed, args.batch) for seed in seeds}
        # Per scenario, counts summed over the seeds.
        results = [replace(overall([per_seed[s][k] for s in seeds]), name=name) for k, name in enumerate(names)]
        total = overall(results)
        print(f"\n{TABLE_HEADER}   (seeds {args.seed})")
        for m in [*results, total]:
            print(_row(m))
        if len(seeds) > 1:
            for seed, seed_results in per_seed.items():
                print(_row(replace(overall(seed_results), name=f"overall seed {seed}")))
        print(TABLE_LEGEND)
        report["scenarios"] = [
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
    if args.nab:
        print(f"\nscoring NAB corpus at {args.nab} ...", flush=True)
        nab = run_nab(forest, metadata, args.nab, args.batch)
        print(f"{'NAB profile':<24} {'full':>6} {'even':>6} {'odd':>6}   (halves: files at even/odd positions)")
        for name, r in nab["full"].items():
            halves = f"{nab['half_even'][name]['score']:6.1f} {nab['half_odd'][name]['score']:6.1f}"
            print(f"NAB {name:<20} {r['score']:6.1f} {halves}   (threshold {r['threshold']:.4f})")
        categories = ", ".join(f"{c} {v:.1f}" for c, v in nab["categories_standard"].items())
        print(f"NAB standard per category at the corpus threshold: {categories}")
        report["nab"] = nab
    elapsed = time.perf_counter() - started
    print(f"\ntotal runtime {elapsed:.1f}s")
    report["runtime_s"] = elapsed
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
