"""Throughput of POST /predict/batch: ``python benchmarks/ml_service_throughput.py --url URL`` or ``--in-process``.

Over HTTP it sends the same pre-serialised batch of simulator events (all fields, as the processor
would) from ``--concurrency`` keep-alive connections for ``--seconds``, decodes every answer and prints
rows/s. ``--in-process`` calls the ASGI app directly (model from MODEL_PATH): the service's own cost
per batch, without the HTTP server, the network and the client.
"""

import argparse
import asyncio
import os
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import requests
from ml_service.app import create_app

from streaming_detector.profiles import generate_normal_events


def over_http(url: str, body: bytes, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get("ML_SCORING_API_KEY"):
        headers["X-API-Key"] = key
    rows = 0
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal rows
        with requests.Session() as session:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = session.post(f"{url}/predict/batch", data=body, headers=headers, timeout=30)
                response.raise_for_status()
                verdicts = orjson.loads(response.content)
                with lock:
                    rows += len(verdicts)
                    latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rows, latencies


def in_process(body: bytes, seconds: float) -> tuple[int, list[float]]:
    app = create_app()
    app.state.store.load()
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict/batch",
        "raw_path": b"/predict/batch",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def one_call() -> int:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        answer: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body":
                answer.append(message["body"])

        await app(dict(scope), receive, send)
        return len(orjson.loads(b"".join(answer)))

    async def loop() -> tuple[int, list[float]]:
        rows, latencies = 0, []
        stop_at = time.perf_counter() + seconds
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            rows += await one_call()
            latencies.append(time.perf_counter() - start)
        return rows, latencies

    return asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the ML service")
    parser.add_argument("--in-process", action="store_true", help="call the app directly, no HTTP server")
    parser.add_argument("--batch", type=int, default=10_000, help="events per request")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    parser.add_argument("--concurrency", type=int, default=2, help="parallel connections (HTTP only)")
    parser.add_argument("--minimal", action="store_true", help="send only latency_ms and error_rate")
    args = parser.parse_args()

    events = [e.model_dump() for e in generate_normal_events(args.batch, seed=1)]
    if args.minimal:
        events = [{"latency_ms": e["latency_ms"], "error_rate": e["error_rate"]} for e in events]
    body = orjson.dumps(events)
    started = time.perf_counter()
    if args.in_process:
        rows, latencies = in_process(body, args.seconds)
    else:
        rows, latencies = over_http(args.url, body, args.seconds, args.concurrency)
    elapsed = time.perf_counter() - started
    latencies.sort()
    mode = "in-process" if args.in_process else f"HTTP, concurrency {args.concurrency}"
    print(
        f"{rows / elapsed:,.0f} rows/s over {elapsed:.1f}s ({mode}): {len(latencies)} requests of {args.batch} "
        f"events ({len(body) / 1e6:.2f} MB each); per request min {latencies[0] * 1000:.1f} ms, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
