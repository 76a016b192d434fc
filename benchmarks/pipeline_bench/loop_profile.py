"""The whole processing loop in this process, under cProfile: where the CPU of one event goes end to end.

``costs`` times each step alone; this runs the processor's real loop (``Pipeline`` built as
``anomaly_processor.app.run`` builds it: the chosen Kafka client, the per-service context over HTTP, the state
changelog, incidents, metrics, printing in ``PRINT_MODE=summary`` to a null stream) over preloaded events,
twice on the same topic with fresh groups: once plain, for the CPU seconds per event (every thread, the Kafka
client's included) and the rate, once under cProfile, for the split of the loop thread's time between its
parts. cProfile slows Python calls down, so the split is given in shares and scaled to the plain run's CPU.
Then, with ``rhythm_pairs``, pairs of plain passes with and without the tracker's time-of-day state (hourly
maxima and baselines, the hour-baseline signal; ``ContextTracker(rhythm=False)``), alternated: what it costs.
"""

import cProfile
import os
import pstats
import statistics
import threading
import time
import uuid
from typing import Any

from anomaly_processor import Pipeline, Printer, ProcessorSettings
from anomaly_processor.app import connect, make_restorer, make_scorer, tune_garbage_collector

from benchmarks.pipeline_bench import events
from benchmarks.pipeline_bench.costs import without_rhythm
from benchmarks.pipeline_bench.stack import REPO_ROOT
from eventbus import KafkaSettings, stream_client
from streaming_detector.scorer import ContextualScorer

# The loop's parts, each the inclusive time of the functions named (file suffix, function name).
PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "consume (poll a batch)": (("batches.py", "poll_batch"),),
    "decode + validate": (("records.py", "decode_batch"),),
    "score: context + ML hop": (("batch_scoring.py", "score"),),
    "incidents": (("incident_feed.py", "observe"), ("incident_feed.py", "announce")),
    "verdict encoding": (("records.py", "verdict_json"),),
    "produce + wait for acks": (("delivery.py", "deliver"),),
    "printing": (("output.py", "batch"),),
    "commits": (("commits.py", "queue"), ("commits.py", "send")),
    "state changelog": (("pipeline.py", "_release"),),
    "metrics": (("pipeline.py", "_count"), ("metrics.py", "beat")),
    "ownership": (("ownership.py", "owned_since"),),
}
TOP = 25


def _pipeline(
    settings: ProcessorSettings, kafka: KafkaSettings, sink: Any, rhythm: bool = True
) -> tuple[Pipeline, Any]:
    """The loop as ``app.run`` builds it (no alert receivers: none are configured by default); ``rhythm=False``:
    its tracker without the time-of-day state."""
    printer = Printer(settings.print_mode, summary_interval_s=settings.summary_interval_s, stream=sink, color=False)
    stop = threading.Event()
    clients = connect(settings, kafka, printer, stop)
    assert clients is not None
    consumer, producer = clients
    scorer = make_scorer(settings)
    if not rhythm and isinstance(scorer, ContextualScorer):
        without_rhythm(scorer)
    restorer = make_restorer(settings, kafka, scorer)
    pipeline = Pipeline(consumer, producer, scorer, kafka=kafka, settings=settings, printer=printer, stop=stop,
                        restorer=restorer)  # fmt: skip

    def close() -> None:
        pipeline.close()
        consumer.close(autocommit=False)
        producer.close(timeout=5)
        scorer.close()

    return pipeline, close


def _pass(
    kafka: KafkaSettings, service_url: str, count: int, profiler: cProfile.Profile | None, rhythm: bool = True
) -> dict[str, float]:
    """One pass over the topic with a fresh group and state topic (a pass's saved state would put the next one at the
    end of the topic); the first batch (group join, restore) is not counted."""
    kafka = kafka.model_copy(update={"state_topic": f"{kafka.state_topic}-{uuid.uuid4().hex[:6]}"})
    settings = ProcessorSettings(
        processor_group=f"loop-{uuid.uuid4().hex[:8]}",
        ml_service_url=service_url,
        print_mode="summary",
        processor_metrics_port=0,
        processor_workers=1,
    )
    with open(os.devnull, "w") as sink:
        pipeline, close = _pipeline(settings, kafka, sink, rhythm)
        try:
            first = 0
            while not first:
                first = pipeline.run_once()
            done = first
            cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            while done < count:
                done += pipeline.run_once()
            if profiler is not None:
                profiler.disable()
            cpu, loop_cpu, wall = time.process_time() - cpu, time.thread_time() - loop_cpu, time.perf_counter() - wall
            pipeline.commit_handled()
        finally:
            close()
    timed = done - first
    return {
        "events": timed,
        "cpu_us_per_event": cpu / timed * 1e6,
        "loop_cpu_us_per_event": loop_cpu / timed * 1e6,
        "rate": timed / wall,
    }


def measure(kafka: KafkaSettings, service_url: str, count: int, rhythm_pairs: int = 0) -> dict[str, Any]:
    """Preload ``count`` events into ``kafka``'s (fresh) topics, then one plain pass and one profiled pass, then
    ``rhythm_pairs`` pairs of plain passes without and with the time-of-day state (in turn first)."""
    events.preload(kafka, count)
    tune_garbage_collector()  # as python main.py does
    plain = _pass(kafka, service_url, count, None)
    profiler = cProfile.Profile()
    profiled = _pass(kafka, service_url, count, profiler)
    stats = pstats.Stats(profiler)
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in entries.values())  # every function's own time: the loop thread's total
    scale = plain["loop_cpu_us_per_event"] / total if total else 0.0  # profiled seconds -> plain us per event
    parts = {}
    for part, functions in PARTS.items():
        seconds = sum(
            entry[3]
            for (path, _, name), entry in entries.items()
            if any(path.endswith(f"anomaly_processor/{module}") and name == function for module, function in functions)
        )
        parts[part] = seconds * scale
    parts["the rest of the loop"] = plain["loop_cpu_us_per_event"] - sum(parts.values())
    parts["other threads (the Kafka client's, metrics)"] = plain["cpu_us_per_event"] - plain["loop_cpu_us_per_event"]
    top = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    rhythm: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    for pair in range(rhythm_pairs):
        for on in (pair % 2 == 1, pair % 2 == 0):
            rhythm["with" if on else "without"].append(_pass(kafka, service_url, count, None, rhythm=on))
    return {
        "client": stream_client(kafka),
        "rhythm": rhythm,
        "plain": plain,
        "profiled": profiled,
        "parts_us_per_event": parts,
        "top_self_us_per_event": [(_where(key), entry[2] * scale, entry[1]) for key, entry in top],
    }


def _where(key: tuple[str, int, str]) -> str:
    path, line, name = key
    if path == "~":  # a builtin
        return name
    for marker in ("site-packages/", f"{REPO_ROOT}/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}:{line})"


def render(result: dict[str, Any]) -> str:
    plain = result["plain"]
    lines = [
        f"whole loop ({result['client']}, one process, {plain['events']:,} events): {plain['rate']:,.0f} events/s, "
        f"{plain['cpu_us_per_event']:.1f} us CPU per event ({plain['loop_cpu_us_per_event']:.1f} in the loop's "
        "thread); the loop's split by a cProfile'd pass (scaled to the plain pass):"
    ]
    lines += [f"  {us:8.2f} us  {part}" for part, us in result["parts_us_per_event"].items()]
    lines.append("  top functions by own time (us per event, scaled; calls in the profiled pass):")
    lines += [f"  {us:8.2f} us  {calls:>9,}  {where}" for where, us, calls in result["top_self_us_per_event"]]
    rhythm = result["rhythm"]
    if rhythm["with"]:
        on, off = rhythm["with"], rhythm["without"]
        cpu = [a["cpu_us_per_event"] / b["cpu_us_per_event"] - 1 for a, b in zip(on, off, strict=True)]
        rate = [a["rate"] / b["rate"] - 1 for a, b in zip(on, off, strict=True)]
        lines.append(
            f"the time-of-day state's cost ({len(on)} alternated pairs of plain passes, medians): "
            f"{_median(on, 'cpu_us_per_event'):.1f} against {_median(off, 'cpu_us_per_event'):.1f} us CPU per event "
            f"({statistics.median(cpu):+.1%}), {_median(on, 'rate'):,.0f} against {_median(off, 'rate'):,.0f} "
            f"events/s ({statistics.median(rate):+.1%}); per pair CPU {', '.join(f'{x:+.1%}' for x in cpu)}"
        )
    return "\n".join(lines)


def _median(passes: list[dict[str, float]], key: str) -> float:
    return statistics.median(p[key] for p in passes)
