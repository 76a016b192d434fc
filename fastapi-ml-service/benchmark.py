"""Throughput of POST /predict/batch against a running service: ``python benchmark.py --url URL``.

Sends the same pre-serialised batch of simulator events (all fields, as the processor would) from
``--concurrency`` keep-alive connections for ``--seconds``, decodes every answer, and prints rows/s.
"""

import argparse
import os
import threading
import time

import orjson
import requests
from log_simulator.profiles import generate_normal_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the ML service")
    parser.add_argument("--batch", type=int, default=10_000, help="events per request")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    parser.add_argument("--concurrency", type=int, default=2, help="parallel connections")
    parser.add_argument("--minimal", action="store_true", help="send only latency_ms and error_rate")
    args = parser.parse_args()

    events = [e.model_dump() for e in generate_normal_events(args.batch, seed=1)]
    if args.minimal:
        events = [{"latency_ms": e["latency_ms"], "error_rate": e["error_rate"]} for e in events]
    body = orjson.dumps(events)
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get("ML_SCORING_API_KEY"):
        headers["X-API-Key"] = key
    rows = 0
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + args.seconds

    def worker() -> None:
        nonlocal rows
        with requests.Session() as session:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = session.post(f"{args.url}/predict/batch", data=body, headers=headers, timeout=30)
                response.raise_for_status()
                verdicts = orjson.loads(response.content)
                with lock:
                    rows += len(verdicts)
                    latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(
        f"{rows / elapsed:,.0f} rows/s over {elapsed:.1f}s: {len(latencies)} requests of {args.batch} events "
        f"({len(body) / 1e6:.2f} MB each), concurrency {args.concurrency}, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
