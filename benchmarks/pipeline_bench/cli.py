"""``python benchmarks/run.py``: the project's pipeline beside the original design, in one run, on one broker."""

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from benchmarks.pipeline_bench import costs, events, loop_profile, measure, peers, profiling
from benchmarks.pipeline_bench.http_load import LoadResult, post_load
from benchmarks.pipeline_bench.report import Row, meets, render_table, write_json
from benchmarks.pipeline_bench.stack import (
    REPO_ROOT,
    Stack,
    fresh_settings,
    sigterm_as_interrupt,
    start_broker,
    start_original_service,
    start_project_service,
    train_models,
    warm_up_group_coordinator,
)

STEPS = ("costs", "e2e", "peers", "original", "floor", "latency", "http", "memory")
TARGET_LOAD = 1000  # events/s at which the p99 target applies
# p99 targets (ms) by offered load (events/s): issue 19.
P99_TARGETS = {1000: 50.0, 20000: 250.0}
DEFAULT_OUTPUT = REPO_ROOT / "bench-results" / "bench.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="events preloaded for the end-to-end run")
    parser.add_argument(
        "--loop-events", type=int, default=100_000, help="events of the costs step's whole-loop profile"
    )
    parser.add_argument(
        "--rhythm-pairs",
        type=int,
        default=2,
        help="alternated pairs of whole-loop passes with and without the tracker's time-of-day state (costs step)",
    )
    parser.add_argument("--original-events", type=int, default=3_000, help="events for the original's end-to-end run")
    parser.add_argument(
        "--peer-workers",
        default="default,1",
        help="the project's rows beside the peers: PROCESSOR_WORKERS of each (default: not set, which is auto); "
        "the ratios use the defaults",
    )
    parser.add_argument(
        "--peers-python",
        type=Path,
        default=peers.PEERS_PYTHON,
        help="the peers' interpreter (their own virtualenv: make peers-venv)",
    )
    parser.add_argument("--loads", default="1000,5000,20000", help="offered loads (events/s) for the latency runs")
    parser.add_argument("--load-seconds", type=float, default=15.0, help="length of each latency run")
    parser.add_argument(
        "--original-load",
        type=float,
        help="offered load (events/s) for the original's latency; default: half the rate it sustained end to end "
        "(200 if not measured), which the project is measured at too",
    )
    parser.add_argument("--http-seconds", type=float, default=5.0, help="length of each HTTP load")
    parser.add_argument("--http-connections", type=int, default=8, help="keep-alive connections of the concurrent load")
    parser.add_argument("--memory-events", type=int, default=1_000_000, help="events of the long run for memory")
    parser.add_argument("--ml-workers", type=int, default=1, help="ML_WORKERS of the project's service")
    parser.add_argument(
        "--workers",
        default="auto",
        help="PROCESSOR_WORKERS of the project's end-to-end and memory runs: a number, or auto (one per partition)",
    )
    parser.add_argument(
        "--latency-workers",
        default="1",
        help="PROCESSOR_WORKERS of the latency runs up to 5,000 events/s (default 1: at 1,000 events/s one process "
        "answers soonest)",
    )
    parser.add_argument(
        "--high-load-workers",
        default="auto",
        help="PROCESSOR_WORKERS of the latency runs above 5,000 events/s (one process cannot keep up there)",
    )
    parser.add_argument(
        "--scale",
        default="",
        help="also run end to end with each of these PROCESSOR_WORKERS, e.g. 1,2,3 (one row each; not run by default)",
    )
    parser.add_argument("--skip", default="", help=f"comma-separated steps to skip: {','.join(STEPS)}")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a local one")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the JSON")
    parser.add_argument("--profile", action="store_true", help="sample processor and service with py-spy (end to end)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every step")
    parser.add_argument(
        "--keyless",
        action="store_true",
        help="the project's end-to-end runs send their events without a key, as the original design's producer "
        "does (the processor re-keys them by service): what a keyless producer costs",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "confluent", "kafka-python"),
        default=None,
        help="KAFKA_CLIENT of the project's processor (default: the environment's, else auto)",
    )
    args = parser.parse_args(argv)
    if args.client:  # the processors started by this run inherit it
        os.environ["KAFKA_CLIENT"] = args.client
    args.skip = {step.strip() for step in args.skip.split(",") if step.strip()}
    if unknown := args.skip - set(STEPS):
        parser.error(f"unknown steps in --skip: {', '.join(sorted(unknown))}")
    args.loads = [float(x) for x in args.loads.split(",") if x.strip()]
    args.scale = [x.strip() for x in args.scale.split(",") if x.strip()]
    args.peer_workers = [x.strip() for x in args.peer_workers.split(",") if x.strip()]
    if args.quick:
        args.events, args.original_events, args.memory_events, args.loop_events = 20_000, 300, 100_000, 20_000
        args.load_seconds, args.http_seconds = 3.0, 1.5
    return args


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-") as temp, sigterm_as_interrupt():
        stack = Stack(Path(temp))
        try:
            details = run(args, stack)
        except KeyboardInterrupt:
            print("interrupted: stopping what the benchmark started", file=sys.stderr)
            return 130
        finally:
            stack.close()
    rows = table(args, details)
    print()
    print(render_table(rows))
    write_json(args.output, rows, details)
    print(f"\nJSON: {args.output}")
    return 0


def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    details: dict[str, Any] = {
        "args": {
            k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "output"
        },
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        progress("starting a local Kafka broker")
        bootstrap = start_broker(stack)
    warm_up_group_coordinator(bootstrap)
    progress("training the project's model and the original's")
    project_model, original_model = train_models(stack.workdir)
    project_url = start_project_service(stack, project_model, args.ml_workers)
    original_url = start_original_service(stack, original_model)
    service_pid, original_pid = stack.children[0].pid, stack.children[1].pid
    profile_dir = args.output.parent / "profile" if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    progress(f"services up: project {project_url} (workers={args.ml_workers}), original {original_url}")

    if "costs" not in args.skip:
        progress("the fast path's per-event costs, step by step")
        details["costs"] = costs.measure(fresh_settings(bootstrap, "costs"), project_url)
        print(costs.render(details["costs"]), flush=True)
        progress(f"the whole loop in one process, plain then under cProfile: {args.loop_events:,} events")
        details["loop"] = loop_profile.measure(
            fresh_settings(bootstrap, "loop"), project_url, args.loop_events, args.rhythm_pairs
        )
        print(loop_profile.render(details["loop"]), flush=True)
    throughput_step(args, details, stack, bootstrap, project_url, service_pid, profile_dir)
    if "peers" not in args.skip:
        details["peers"] = peers_step(args, stack, bootstrap, project_url, original_url)
    if "original" not in args.skip:
        original_step(args, details, stack, bootstrap, original_url, original_pid, profile_dir)
    if "floor" not in args.skip:
        progress(f"kafka-python alone in one process: {args.events:,} records")
        floor = measure.library_floor(bootstrap, args.events, progress)
        details["library_floor"] = asdict(floor) | {"consume_and_produce_rate": floor.consume_and_produce_rate}
    if "latency" not in args.skip:
        latency_step(args, details, stack, bootstrap, project_url, original_url)
    if "http" not in args.skip:
        details["http"] = http_step(args, project_url, original_url)
    if "memory" not in args.skip:
        details["memory"] = memory_step(args, stack, bootstrap, project_url, service_pid)
    return details


def throughput_step(
    args: argparse.Namespace,
    details: dict[str, Any],
    stack: Stack,
    bootstrap: str,
    project_url: str,
    service_pid: int,
    profile_dir: Path | None,
) -> None:
    """The project end to end with the processor's defaults, then with each ``--scale`` worker count."""
    if "e2e" not in args.skip:
        profile = (profile_dir, service_pid) if profile_dir else None
        e2e = _project_end_to_end(args, stack, bootstrap, project_url, service_pid, args.workers, "", profile)
        details["e2e_project"] = _without_samples(asdict(e2e)) | {"rate": e2e.rate}
        report_profile(details, profile, e2e.profile_seconds)
    for workers in args.scale:
        run_ = _project_end_to_end(
            args, stack, bootstrap, project_url, service_pid, workers, f", PROCESSOR_WORKERS={workers}"
        )
        details.setdefault("scale", {})[workers] = _without_samples(asdict(run_)) | {"rate": run_.rate}


def _project_end_to_end(
    args: argparse.Namespace,
    stack: Stack,
    bootstrap: str,
    project_url: str,
    service_pid: int,
    workers: str | None,
    title: str,
    profile: tuple[Path, int] | None = None,
) -> measure.EndToEnd:
    """One end-to-end run of the project's processor with ``workers``, announced and summed up as it goes."""
    progress(f"end to end, project{title}: {args.events:,} events{' (keyless)' if args.keyless else ''}")
    run_ = measure.end_to_end_project(
        stack,
        bootstrap,
        project_url,
        args.events,
        progress,
        profile=profile,
        workers=workers,
        service_pid=service_pid,
        keyless=args.keyless,
    )
    progress(f"  {run_.rate:,.0f} events/s end to end, {run_.steady_rate or 0:,.0f}/s steady; {cpu_text(run_)}")
    return run_


def peers_step(
    args: argparse.Namespace, stack: Stack, bootstrap: str, project_url: str, original_url: str
) -> dict[str, Any]:
    """The peers (relay floor, Quix Streams, original, project) on one preloaded topic, and their ratios."""
    progress(f"peers: {args.events:,} original-design events, one topic, each contender in turn")
    found = peers.run_peers(
        stack,
        bootstrap,
        project_url,
        original_url,
        args.events,
        0 if "original" in args.skip else args.original_events,
        args.peer_workers,
        progress,
        python=args.peers_python,
    )
    runs = found["runs"]
    assert isinstance(runs, dict)
    found["runs"] = {name: asdict(run) | {"rate": run.rate} for name, run in runs.items()}
    found["ratios"] = peers.ratios(runs)
    return found


def original_step(
    args: argparse.Namespace,
    details: dict[str, Any],
    stack: Stack,
    bootstrap: str,
    original_url: str,
    original_pid: int,
    profile_dir: Path | None,
) -> None:
    progress(f"end to end, original design: {args.original_events:,} events")
    original_profile = (profile_dir, original_pid) if profile_dir else None
    orig = measure.end_to_end_original(
        stack, bootstrap, original_url, args.original_events, progress, profile=original_profile
    )
    report_profile(details, original_profile, orig.profile_seconds)
    details["e2e_original"] = _without_samples(asdict(orig)) | {"rate": orig.rate}
    progress(f"  {orig.rate:,.0f} events/s end to end, {orig.steady_rate or 0:,.0f}/s steady")


def memory_step(
    args: argparse.Namespace, stack: Stack, bootstrap: str, project_url: str, service_pid: int
) -> dict[str, Any]:
    progress(f"memory: {args.memory_events:,} events through the project's processor")
    memory = measure.memory_run(
        stack, bootstrap, project_url, service_pid, args.memory_events, progress, workers=args.workers
    )
    progress(
        f"  processor RSS {memory.processor_rss_at_10pct or 0:.0f} MiB at 10%, "
        f"{memory.processor_rss_at_end or 0:.0f} MiB at the end; peak {memory.processor_peak:.0f} MiB; "
        f"PSS at the end {memory.processor_pss_at_end:.0f} MiB"
    )
    return asdict(memory) | {"processor_growth": memory.processor_growth}


def latency_step(
    args: argparse.Namespace, details: dict[str, Any], stack: Stack, bootstrap: str, project_url: str, original_url: str
) -> None:
    """Latency at each offered load, the relay's floor at the target load, and the original's at its own."""
    details["latency_project"] = {}
    if args.original_load is None:
        args.original_load = sustainable_load(details.get("e2e_original"))
    loads = sorted({*args.loads, args.original_load})
    for load in loads:
        progress(f"latency, project, {load:,.0f} events/s")
        result = measure.latency_project(
            stack, bootstrap, project_url, load, args.load_seconds, progress, workers=latency_workers(args, load)
        )
        details["latency_project"][str(int(load))] = asdict(result)
        progress(
            f"  p50 {result.p50_ms:.1f} ms, p95 {result.p95_ms:.1f}, p99 {result.p99_ms:.1f}, "
            f"achieved {result.achieved_rate:,.0f}/s, {result.received:,}/{result.sent:,} verdicts"
        )
        progress(f"  p99 of each second sent (ms): {', '.join(f'{v:.0f}' for v in result.p99_by_second_ms)}")
        if result.cpu_pressure_by_second:
            shown = ", ".join(f"{v:.0f}" for v in result.cpu_pressure_by_second)
            progress(f"  CPU pressure of each second (% of it a task waited for a core): {shown}")
    if TARGET_LOAD in loads:
        progress(f"latency floor: the same load through a Kafka relay that does no work, {TARGET_LOAD:,} events/s")
        floor_latency = measure.latency_floor(stack, bootstrap, TARGET_LOAD, args.load_seconds, progress)
        details["latency_floor"] = {str(TARGET_LOAD): asdict(floor_latency)}
        progress(f"  p50 {floor_latency.p50_ms:.1f} ms, p95 {floor_latency.p95_ms:.1f}, p99 {floor_latency.p99_ms:.1f}")
    if "original" not in args.skip:
        progress(f"latency, original design, {args.original_load:,.0f} events/s")
        result = measure.latency_original(
            stack, bootstrap, original_url, args.original_load, args.load_seconds, progress
        )
        details["latency_original"] = asdict(result)
        progress(
            f"  p50 {result.p50_ms:.1f} ms, p95 {result.p95_ms:.1f}, p99 {result.p99_ms:.1f}, "
            f"{result.received:,}/{result.sent:,} verdicts"
        )


def latency_workers(args: argparse.Namespace, load: float) -> str:
    return args.latency_workers if load <= 5000 else args.high_load_workers


def cpu_text(run: measure.EndToEnd) -> str:
    """``CPU: processor 61.2 s (98% of 1 core), service ...``: where the machine's time went during the run."""
    parts = [f"{name} {used:.1f} s ({100 * used / run.total_s:.0f}%)" for name, used in run.cpu.items()]
    return "CPU " + ", ".join(parts) + " of one core" if parts else "CPU not measured"


def report_profile(details: dict[str, Any], profile: tuple[Path, int] | None, seconds: dict[str, float]) -> None:
    if profile is None:
        return
    for name, sampled_s in seconds.items():
        summary = profiling.summarise(profile[0] / f"{name}.txt", seconds=sampled_s)
        details.setdefault("profile", {})[name] = summary
        print(profiling.render(name, summary))


def sustainable_load(original_e2e: dict[str, Any] | None) -> float:
    """Half the original's end-to-end rate, rounded down to 2 significant digits: a load it keeps up with."""
    if not original_e2e:
        return 200.0
    half = 0.5 * (original_e2e["steady_rate"] or original_e2e["rate"])
    digits = max(0, len(str(int(half))) - 2)
    return float(max(5, int(half) // 10**digits * 10**digits))


def http_step(args: argparse.Namespace, project_url: str, original_url: str) -> dict[str, Any]:
    pool = events.event_pool(size=10_000)
    single = orjson.dumps(pool[0])
    out: dict[str, Any] = {}

    def record(name: str, result: LoadResult) -> None:
        out[name] = {**asdict(result), "requests_per_s": result.requests_per_s, "rows_per_s": result.rows_per_s}
        progress(f"  {name}: {result.requests_per_s:,.0f} requests/s, {result.rows_per_s:,.0f} rows/s")

    progress("HTTP: /predict single, sequential and concurrent, both services")
    for name, url in (("project", project_url), ("original", original_url)):
        for connections in (1, args.http_connections):
            post_load(url, "/predict", single, 1, 0.5, connections)  # warm-up
            record(
                f"{name}_predict_c{connections}", post_load(url, "/predict", single, 1, args.http_seconds, connections)
            )
    progress("HTTP: /predict/batch, project")
    for rows in (1_000, 10_000):
        body = orjson.dumps(pool[:rows])
        for connections in (1, 2):
            post_load(project_url, "/predict/batch", body, rows, 0.5, connections)
            record(
                f"project_batch{rows}_c{connections}",
                post_load(project_url, "/predict/batch", body, rows, args.http_seconds, connections),
            )
    return out


def table(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """The report's rows, section by section (a section whose step did not run has none)."""
    return [
        *_end_to_end_rows(args, details),
        *_peer_rows(details),
        *_scale_rows(details),
        *_library_floor_rows(details),
        *_latency_rows(args, details),
        *_http_rows(args, details),
        *_memory_rows(details),
    ]


def _end_to_end_rows(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """The end-to-end rates beside the original's, and the preload rate."""
    rows: list[Row] = []
    e2e, orig = details.get("e2e_project"), details.get("e2e_original")
    if e2e or orig:
        project_rate = e2e["rate"] if e2e else None
        original_rate = orig["rate"] if orig else None
        row = Row(
            "end to end, start to last verdict", "events/s", project_rate, original_rate, target=">= 20,000 and >= 80x"
        )
        row.met = _both(meets(project_rate, 20_000), meets(row.ratio, 80))
        if e2e and orig:
            row.note = (
                f"project {e2e['events']:,} events, original {orig['events']:,} events "
                "(its verdicts are stdout lines); same broker"
            )
        if e2e:
            row.note = "; ".join(filter(None, [row.note, f"PROCESSOR_WORKERS={args.workers}"]))
        rows.append(row)
        steady = Row(
            "end to end, steady 10%-90%",
            "events/s",
            e2e and e2e["steady_rate"],
            orig and orig["steady_rate"],
            target=">= 20,000",
        )
        steady.met = meets(steady.project, 20_000)
        rows.append(steady)
        rows.append(
            Row(
                "preload (tuned kafka-python producers)",
                "events/s",
                e2e and e2e["preload_rate"],
                orig and orig["preload_rate"],
            )
        )
    return rows


def _peer_rows(details: dict[str, Any]) -> list[Row]:
    """Each contender's rate on the same preloaded events, then the project's ratios to the peers."""
    found = details.get("peers")
    if not found:
        return []
    rows = [
        Row(
            f"peers: {name}",
            "events/s",
            run["rate"],
            note=f"{run['events']:,} events, {run['outputs']:,} outputs in {run['span_s']:.2f} s (first to last "
            "output record); "
            f"start to last {run['total_s']:.1f} s; CPU {run['cpu_s']:.1f} s",
        )
        for name, run in found["runs"].items()
    ]
    ratios = found["ratios"]
    for key, peer, minimum in (
        ("project_over_quix", peers.QUIX, 2.0),
        ("project_over_relay_floor", peers.RELAY, 0.5),
        ("project_over_original", peers.ORIGINAL, None),
    ):
        if peer in found["runs"]:
            rows.append(
                Row(
                    f"project, defaults / {peer.split(',')[0].split(' (')[0]}",
                    "x",
                    ratios[key],
                    target="" if minimum is None else f">= {minimum:g}",
                    met=None if minimum is None else meets(ratios[key], minimum),
                )
            )
    return rows


def _scale_rows(details: dict[str, Any]) -> list[Row]:
    """One row per PROCESSOR_WORKERS count of ``--scale``."""
    rows: list[Row] = []
    for workers, run_ in details.get("scale", {}).items():
        rows.append(
            Row(
                f"end to end, PROCESSOR_WORKERS={workers}",
                "events/s",
                run_["rate"],
                target=">= 20,000",
                met=meets(run_["rate"], 20_000),
                note=f"steady {run_['steady_rate'] or 0:,.0f}/s; CPU s: "
                + ", ".join(f"{name} {used:.0f}" for name, used in run_["cpu"].items()),
            )
        )
    return rows


def _library_floor_rows(details: dict[str, Any]) -> list[Row]:
    """What kafka-python alone does in one process: the ceiling of a one-process processor."""
    rows: list[Row] = []
    floor = details.get("library_floor")
    if floor:
        rows.append(Row("kafka-python alone, 1 process: produce", "records/s", floor["produce_rate"]))
        rows.append(Row("kafka-python alone, 1 process: consume", "records/s", floor["consume_rate"]))
        rows.append(
            Row(
                "kafka-python alone: consume + produce",
                "records/s",
                floor["consume_and_produce_rate"],
                note="1/(1/consume + 1/produce): the most a one-process kafka-python processor can do "
                "with no parsing, scoring or serialising",
            )
        )
    return rows


def _latency_rows(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """Latency quantiles per offered load, with the relay's floor and the achieved rate."""
    rows: list[Row] = []
    latencies = details.get("latency_project", {})
    original_latency: dict[str, Any] = details.get("latency_original") or {}
    for load, result in latencies.items():
        is_original_load = bool(original_latency) and float(load) == original_latency["offered_rate"]
        for q in ("p50", "p95", "p99"):
            row = Row(
                f"latency {q} at {int(float(load)):,}/s",
                "ms",
                result[f"{q}_ms"],
                original_latency[f"{q}_ms"] if is_original_load else None,
                direction="lower",
            )
            target = P99_TARGETS.get(int(float(load)))
            if q == "p99" and target is not None:
                row.target, row.met = f"<= {target:g}", meets(row.project, maximum=target)
            if q == "p99":
                row.note = f"PROCESSOR_WORKERS={latency_workers(args, float(load))}"
            rows.append(row)
        rows.append(
            Row(
                f"  p99 event sent -> verdict produced at {int(float(load)):,}/s",
                "ms",
                result["to_verdict_p99_ms"],
                direction="lower",
            )
        )
        floor_latency = details.get("latency_floor", {}).get(load)
        if floor_latency:
            for q in ("p50", "p99"):
                rows.append(
                    Row(
                        f"  {q} through a Kafka relay doing no work at {int(float(load)):,}/s",
                        "ms",
                        floor_latency[f"{q}_ms"],
                        direction="lower",
                        note="floor: the processor's Kafka clients and options, two hops, no scoring"
                        if q == "p99"
                        else "",
                    )
                )
        rows.append(
            Row(
                f"  achieved rate at {int(float(load)):,}/s",
                "events/s",
                result["achieved_rate"],
                original_latency["achieved_rate"] if is_original_load else None,
                note=f"the producers offered only {result['achieved_rate']:,.0f} events/s: these latencies are not "
                "those at this load"
                if result["achieved_rate"] < 0.95 * float(load)
                else "",
            )
        )
    return rows


def _http_rows(args: argparse.Namespace, details: dict[str, Any]) -> list[Row]:
    """The ML services' HTTP rates: /predict on one and many connections, /predict/batch."""
    rows: list[Row] = []
    http = details.get("http")
    if http:
        c = args.http_connections
        seq = Row(
            "/predict single, 1 connection",
            "requests/s",
            http["project_predict_c1"]["requests_per_s"],
            http["original_predict_c1"]["requests_per_s"],
        )
        conc = Row(
            f"/predict single, {c} connections",
            "requests/s",
            http[f"project_predict_c{c}"]["requests_per_s"],
            http[f"original_predict_c{c}"]["requests_per_s"],
            target=">= 2,000 and >= 7x",
        )
        conc.met = _both(meets(conc.project, 2_000), meets(conc.ratio, 7))
        rows += [seq, conc]
        best_batch = max((v["rows_per_s"], k) for k, v in http.items() if "batch" in k)
        for key in sorted(k for k in http if "batch" in k):
            rows.append(
                Row(
                    f"/predict/batch {key.split('batch')[1].replace('_c', ' rows, conns ')}",
                    "rows/s",
                    http[key]["rows_per_s"],
                )
            )
        rows.append(
            Row("/predict/batch, best", "rows/s", best_batch[0], target=">= 300,000", met=meets(best_batch[0], 300_000))
        )
    return rows


def _memory_rows(details: dict[str, Any]) -> list[Row]:
    """The processor's and the service's memory over the long run."""
    rows: list[Row] = []
    memory = details.get("memory")
    if memory:
        tenth = memory["events"] // 10
        rows.append(
            Row(f"processor RSS at {tenth:,} verdicts", "MiB", memory["processor_rss_at_10pct"], direction="lower")
        )
        rows.append(
            Row(
                f"processor RSS at {memory['events']:,} verdicts",
                "MiB",
                memory["processor_rss_at_end"],
                direction="lower",
            )
        )
        growth = memory["processor_growth"]
        rows.append(
            Row(
                "processor RSS growth",
                "%",
                None if growth is None else growth * 100,
                direction="lower",
                target="<= 10",
                met=meets(None if growth is None else growth * 100, maximum=10),
            )
        )
        rows.append(Row("processor peak RSS (VmHWM)", "MiB", memory["processor_peak"], direction="lower"))
        rows.append(
            Row(
                "processor PSS at end",
                "MiB",
                memory["processor_pss_at_end"],
                direction="lower",
                note="a library page the workers share (numba's LLVM) counts once in PSS, once per process in RSS",
            )
        )
        rows.append(
            Row(
                "service RSS at end / peak",
                "MiB",
                memory["service_rss_at_end"],
                direction="lower",
                note=f"service peak {memory['service_peak']:.0f} MiB over the long run",
            )
        )
    return rows


def _both(first: bool | None, second: bool | None) -> bool | None:
    if first is None or second is None:
        return first if second is None else second if first is None else None
    return first and second


def _without_samples(values: dict[str, Any]) -> dict[str, Any]:
    samples = values.pop("samples", [])
    # Keep a thinned series (about 50 points): enough to plot, small enough to read.
    step = max(1, len(samples) // 50)
    values["progress"] = samples[::step] + samples[-1:]
    return values


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
