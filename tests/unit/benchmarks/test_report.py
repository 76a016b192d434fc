"""The benchmark's arithmetic and its HTTP client: percentiles, ratios, rates from progress samples, the table."""

import asyncio
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmarks.pipeline_bench.http_load import HttpLoadError, post_load
from benchmarks.pipeline_bench.profiling import summarise
from benchmarks.pipeline_bench.report import (
    Row,
    crossing_time,
    meets,
    percentile,
    rate_between,
    ratio,
    render_table,
    write_json,
)


@pytest.mark.parametrize("q", [0, 1, 50, 95, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = list(np.random.default_rng(3).exponential(20.0, 1001))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_nan() -> None:
    assert np.isnan(percentile([], 99))


def test_ratio_is_how_many_times_better_in_either_direction() -> None:
    assert ratio(24_000, 240) == pytest.approx(100)
    assert ratio(10.0, 500.0, "lower") == pytest.approx(50)  # 10 ms instead of 500 ms
    assert ratio(100, None) is None
    assert ratio(100, 0) is None


def test_rate_between_interpolates_the_crossings() -> None:
    # 1,000 verdicts/s after a 2 s start-up, sampled every 0.5 s.
    samples = [(2.0 + 0.5 * i, 500 * i) for i in range(21)]
    assert crossing_time(samples, 1_000) == pytest.approx(3.0)
    assert crossing_time(samples, 1_250) == pytest.approx(3.25)
    assert rate_between(samples, 1_000, 9_000) == pytest.approx(1_000)
    assert crossing_time(samples, 20_000) is None


def test_meets_bounds_and_unmeasured() -> None:
    assert meets(20_000, minimum=20_000) is True
    assert meets(19_999, minimum=20_000) is False
    assert meets(101, maximum=100) is False
    assert meets(None, minimum=1) is None


def test_table_shows_ratio_target_and_verdict(tmp_path: Path) -> None:
    rows = [
        Row("end to end", "events/s", 24_000, 240, target=">= 20,000", met=True),
        Row("latency p99", "ms", 50.0, 1_000.0, direction="lower", target="<= 100", met=False, note="busy machine"),
    ]
    text = render_table(rows)
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "metric"
    assert "24,000" in lines[2] and "100.0x" in lines[2] and lines[2].endswith("yes")
    assert "20.0x" in lines[3] and lines[3].endswith("NO")
    assert "busy machine" in text
    write_json(tmp_path / "out" / "bench.json", rows, {"e2e": {"rate": float("nan")}})
    written = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert written["table"][0]["ratio"] == pytest.approx(100)
    assert written["details"]["e2e"]["rate"] is None


def test_profile_summary_shares(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "main (app.py:10);poll (kafka/consumer.py:5) 30\n"
        "main (app.py:10);score (scoring.py:7);post (requests/api.py:3) 70\n"
    )
    summary = summarise(raw)
    assert summary["self"][0] == ("post (requests/api.py)", pytest.approx(70.0))
    inclusive = dict(summary["inclusive"])
    assert inclusive["score (scoring.py)"] == pytest.approx(70.0)
    assert "main (app.py)" not in inclusive  # on every stack: says nothing


def test_profile_summary_sums_a_function_over_the_forked_workers(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(  # py-spy --subprocesses: each stack starts with its process
        'process 11:"python main.py";main (app.py:10);run (workers.py:3) 10\n'
        'process 12:"python main.py";main (app.py:10);run (workers.py:3);send (kafka/producer.py:9) 45\n'
        'process 13:"python main.py";main (app.py:10);run (workers.py:3);send (kafka/producer.py:9) 45\n'
    )
    summary = summarise(raw)
    assert summary["self"][0] == ("send (kafka/producer.py)", pytest.approx(90.0))
    assert not any(name.startswith("process ") for name, _ in summary["self"] + summary["inclusive"])


class _JsonServer:
    """A keep-alive HTTP server on 127.0.0.1 answering every POST with ``answer`` and ``status``."""

    def __init__(self, answer: bytes, status: int = 200) -> None:
        self.answer, self.status = answer, status
        self.ready = threading.Event()
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopped = self.loop.create_future()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        async with server:
            await self.stopped
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length"))
                await reader.readexactly(int(length.split(b":")[1]))
                status_line = f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.answer)}\r\n\r\n"
                writer.write(status_line.encode() + self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def __enter__(self) -> str:
        self.thread.start()
        self.ready.wait(5)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set_result, None)
        self.thread.join(5)


def test_http_load_counts_requests_and_rows_over_keep_alive() -> None:
    with _JsonServer(b'[{"anomaly": false}, {"anomaly": true}]') as url:
        result = post_load(url, "/predict/batch", b"[{}, {}]", rows_per_call=2, seconds=0.3, connections=3)
    assert result.requests > 0
    assert result.rows == 2 * result.requests
    assert result.connections == 3


def test_http_load_refuses_errors_and_short_answers() -> None:
    with _JsonServer(b'{"detail": "no model"}', status=503) as url, pytest.raises(HttpLoadError, match="503"):
        post_load(url, "/predict", b"{}", rows_per_call=1, seconds=0.2, connections=1)
    with _JsonServer(b'[{"anomaly": false}]') as url, pytest.raises(HttpLoadError, match="asked 2"):
        post_load(url, "/predict/batch", b"[{}, {}]", rows_per_call=2, seconds=0.2, connections=1)


def test_original_latency_load_is_half_what_it_sustained() -> None:
    from benchmarks.pipeline_bench.cli import sustainable_load

    assert sustainable_load({"steady_rate": 250.0, "rate": 240.0}) == 120.0
    assert sustainable_load({"steady_rate": None, "rate": 43.0}) == 21.0
    assert sustainable_load({"steady_rate": 4.0, "rate": 4.0}) == 5.0  # never below 5 events/s
    assert sustainable_load(None) == 200.0


def test_each_worker_count_of_scale_gets_its_own_row_with_the_cpu_split() -> None:
    from benchmarks.pipeline_bench.cli import parse_args, table

    args = parse_args(["--scale", "1, 3"])
    assert (args.workers, args.latency_workers, args.scale) == ("auto", "1", ["1", "3"])
    details = {
        "scale": {
            "1": {"rate": 9_800.0, "steady_rate": 10_500.0, "cpu": {"processor": 16.0, "service": 1.8}},
            "3": {"rate": 21_000.0, "steady_rate": 24_000.0, "cpu": {"processor": 19.0, "service": 2.0}},
        }
    }
    rows = {row.metric: row for row in table(args, details)}
    one, three = rows["end to end, PROCESSOR_WORKERS=1"], rows["end to end, PROCESSOR_WORKERS=3"]
    assert (one.project, one.met) == (9_800.0, False)
    assert (three.project, three.met) == (21_000.0, True)
    assert "processor 16" in one.note and "service 2" in one.note


def test_the_latency_floor_is_shown_under_the_load_it_was_measured_at() -> None:
    from benchmarks.pipeline_bench.cli import parse_args, table

    measured = {"p50_ms": 20.0, "p95_ms": 40.0, "p99_ms": 45.0, "to_verdict_p99_ms": 40.0, "achieved_rate": 1000.0}
    details = {
        "latency_project": {"1000": measured, "5000": measured | {"p99_ms": 150.0}},
        "latency_floor": {"1000": measured | {"p50_ms": 11.0, "p99_ms": 60.0}},
    }
    rows = table(parse_args([]), details)
    floor_rows = [row for row in rows if "relay" in row.metric]
    assert [(row.metric.strip(), row.project) for row in floor_rows] == [
        ("p50 through a Kafka relay doing no work at 1,000/s", 11.0),
        ("p99 through a Kafka relay doing no work at 1,000/s", 60.0),
    ]
    metrics = [row.metric for row in rows]
    assert (
        metrics.index("latency p99 at 1,000/s")
        < metrics.index(floor_rows[0].metric)
        < metrics.index("latency p50 at 5,000/s")
    )
    assert next(row for row in rows if row.metric == "latency p99 at 1,000/s").met is True


def test_cpu_seconds_counts_a_process_and_its_children() -> None:
    import os
    import subprocess
    import time

    from benchmarks.pipeline_bench.stack import cpu_seconds

    burner = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', 'sum(range(10**7))'])"]
    )
    try:
        seen = 0.0
        while burner.poll() is None:
            seen = max(seen, cpu_seconds(burner.pid))  # the grandchild's burn shows while it runs
            time.sleep(0.01)
    finally:
        burner.wait()
    assert seen > 0
    assert cpu_seconds(os.getpid()) > 0


def test_p99_targets_are_50_ms_at_1k_and_250_ms_at_20k_with_the_workers_used() -> None:
    from benchmarks.pipeline_bench.cli import parse_args, table

    def at(p99: float) -> dict[str, float]:
        return {"p50_ms": 5.0, "p95_ms": 9.0, "p99_ms": p99, "to_verdict_p99_ms": p99, "achieved_rate": 1.0}

    details = {"latency_project": {"1000": at(51.0), "5000": at(400.0), "20000": at(240.0)}}
    details["latency_project"]["1000"]["achieved_rate"] = 999.0
    details["latency_project"]["20000"]["achieved_rate"] = 7_769.0
    rows = {row.metric: row for row in table(parse_args([]), details)}
    assert rows["  achieved rate at 1,000/s"].note == ""
    assert rows["  achieved rate at 20,000/s"].note.startswith("the producers offered only 7,769 events/s")
    assert (rows["latency p99 at 1,000/s"].target, rows["latency p99 at 1,000/s"].met) == ("<= 50", False)
    assert (rows["latency p99 at 5,000/s"].target, rows["latency p99 at 5,000/s"].met) == ("", None)
    assert (rows["latency p99 at 20,000/s"].target, rows["latency p99 at 20,000/s"].met) == ("<= 250", True)
    assert rows["latency p99 at 1,000/s"].note == "PROCESSOR_WORKERS=1"
    assert rows["latency p99 at 20,000/s"].note == "PROCESSOR_WORKERS=auto"


def test_peer_rows_give_each_rate_and_the_projects_ratios_against_their_targets(tmp_path: Path) -> None:
    from benchmarks.pipeline_bench import peers
    from benchmarks.pipeline_bench.cli import parse_args, table

    def run(rate: float) -> dict[str, float]:
        return {"rate": rate, "events": 200_000, "outputs": 200_000, "span_s": 2e5 / rate, "total_s": 9.0, "cpu_s": 4.0}

    found = {
        peers.RELAY: peers.PeerRun(peers.RELAY, 200_000, 200_000, 2.0, 3.0, 2.0),  # 100,000/s
        peers.QUIX: peers.PeerRun(peers.QUIX, 200_000, 200_000, 8.0, 12.0, 9.0),  # 25,000/s
        peers.project_name("default"): peers.PeerRun(peers.project_name("default"), 200_000, 200_450, 4.0, 6.0, 8.0),
    }
    ratios = peers.ratios(found)
    assert ratios["project_over_quix"] == pytest.approx(2.0)  # 450 verdicts written twice do not count
    assert ratios["project_over_relay_floor"] == pytest.approx(0.5)
    assert ratios["project_over_original"] is None  # not measured
    details = {"peers": {"runs": {name: run(r.rate) for name, r in found.items()}, "ratios": ratios}}
    rows = {row.metric: row for row in table(parse_args([]), details)}
    assert rows["peers: project, defaults"].project == pytest.approx(50_000)
    quix = rows["project, defaults / Quix Streams"]
    relay = rows["project, defaults / librdkafka relay"]
    assert (quix.project, quix.target, quix.met) == (pytest.approx(2.0), ">= 2", True)
    assert (relay.project, relay.target, relay.met) == (pytest.approx(0.5), ">= 0.5", True)
    assert "project, defaults / original design" not in rows
    write_json(tmp_path / "bench.json", list(rows.values()), details)
    document = json.loads((tmp_path / "bench.json").read_text())
    assert document["details"]["peers"]["ratios"]["project_over_quix"] == pytest.approx(2.0)
