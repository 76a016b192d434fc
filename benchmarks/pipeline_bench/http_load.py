"""A minimal keep-alive HTTP/1.1 client on asyncio streams, the same for both services.

A tiny client keeps the client's own CPU small on a 2-core machine shared with the server it
measures (``requests`` alone costs about as much per call as the server). Every answer is read
in full, its status checked and its JSON decoded.
"""

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


class HttpLoadError(RuntimeError):
    """The service answered something else than 200 with JSON."""


@dataclass
class LoadResult:
    requests: int
    rows: int
    seconds: float
    connections: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def build_request(url: str, path: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length = None
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise HttpLoadError(f"answer without Content-Length: {status_line}")
    body = await reader.readexactly(length)
    if status != 200:
        raise HttpLoadError(f"{status_line}: {body[:200]!r}")
    return body


async def _connection(url: str, request: bytes, stop_at: float, counts: list[int], rows_per_call: int) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            answer = orjson.loads(await _read_answer(reader))
            rows = len(answer) if isinstance(answer, list) else 1
            if rows != rows_per_call:
                raise HttpLoadError(f"asked {rows_per_call} verdicts, got {rows}")
            counts[0] += 1
            counts[1] += rows
    finally:
        writer.close()


async def _run(url: str, path: str, body: bytes, rows_per_call: int, seconds: float, connections: int) -> LoadResult:
    request = build_request(url, path, body)
    counts = [0, 0]
    began = time.perf_counter()
    stop_at = began + seconds
    await asyncio.gather(*(_connection(url, request, stop_at, counts, rows_per_call) for _ in range(connections)))
    return LoadResult(counts[0], counts[1], time.perf_counter() - began, connections)


def post_load(url: str, path: str, body: bytes, rows_per_call: int, seconds: float, connections: int) -> LoadResult:
    """POST ``body`` to ``url + path`` over ``connections`` keep-alive connections for ``seconds``."""
    return asyncio.run(_run(url, path, body, rows_per_call, seconds, connections))
