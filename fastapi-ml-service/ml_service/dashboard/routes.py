"""HTTP side of the dashboard: the page, its two static files, a JSON snapshot and a server-sent event stream.

``GET /dashboard``               the page (no external scripts, works offline)
``GET /dashboard/api/snapshot``  the window as JSON; reads only, never starts the Kafka feed
``GET /dashboard/stream``        ``text/event-stream``: a ``snapshot`` message, then an ``update`` about every
                                 second (one JSON object per message); starts the feed, which stops after
                                 the last stream closed plus a grace period
"""

import asyncio
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from ml_service.dashboard.feed import Feed, get_feed

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

_STATIC = resources.files("ml_service.dashboard") / "static"
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# How long the browser waits before reconnecting a dropped stream.
RECONNECT_MS = 2000

FeedDependency = Annotated[Feed, Depends(get_feed)]


@router.get("", response_class=HTMLResponse, summary="The live dashboard page")
def page(request: Request) -> HTMLResponse:
    base = request.scope.get("root_path", "") + router.prefix
    html = (_STATIC / "index.html").read_text(encoding="utf-8").replace("__BASE__", base)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", summary="The page's script and style sheet")
def asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no dashboard asset named {name!r}")
    return Response((_STATIC / name).read_bytes(), media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/api/snapshot", summary="Per-service series, counters and latest anomalies of the window")
def snapshot(feed: FeedDependency) -> Response:
    return Response(orjson.dumps(_with_status(feed.window.snapshot(), feed)), media_type="application/json")


@router.get("/stream", summary="Live updates as server-sent events")
async def stream(request: Request, feed: FeedDependency) -> StreamingResponse:
    return StreamingResponse(
        _events(request, feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(request: Request, feed: Feed) -> AsyncIterator[bytes]:
    feed.acquire()
    try:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        first = feed.window.snapshot()
        yield _message(_with_status(first, feed))
        seen = first["rev"]
        ends_at = time.monotonic() + feed.settings.dashboard_stream_max_s
        while time.monotonic() < ends_at:
            await asyncio.sleep(feed.settings.dashboard_push_interval_s)
            if await request.is_disconnected():
                break
            update = feed.window.delta(seen)
            seen = update["rev"]
            yield _message(_with_status(update, feed))
    finally:
        feed.release()


def _with_status(view: dict[str, Any], feed: Feed) -> dict[str, Any]:
    view["feed"] = feed.status()
    board = getattr(feed, "incidents", None)  # open and recent incidents, when the feed reads them
    view["incidents"] = board.view() if board is not None else {"open": [], "recent": []}
    return view


def _message(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
