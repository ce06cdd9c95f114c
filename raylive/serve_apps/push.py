"""WebSocket push: each stream's status at least once a second, and its events as they happen."""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from .. import store
from .auth import websocket_caller
from .context import STATE, call, stream_details

PUSH_INTERVAL_S = 1.0
router = APIRouter()


def _snapshot(info: dict[str, Any]) -> dict[str, Any]:
    keys = (
        *("name", "state", "viewers", "peak_viewers", "bitrate_kbps", "fps", "resolution", "started_at", "ended_at"),
        *("keyframe_interval_ms", "transcode_lag_s", "node", "ladder", "revoked", "video_codec", "audio_codec"),
        *("unique_viewers", "viewers_by_rendition", "renditions"),
    )
    return {"type": "status", "time": time.time(), **{k: info.get(k) for k in keys}}


async def _push(ws: WebSocket, name: str | None) -> None:
    """Status at least once a second, plus events as they happen (publish, unpublish, processor results)."""
    if await websocket_caller(ws) is None:
        await ws.close(code=4401, reason="missing, spent or invalid ticket: POST /api/v1/ws-tickets for one")
        return
    await ws.accept()
    r: aioredis.Redis = STATE.redis
    pubsub = r.pubsub()
    await pubsub.subscribe(store.EVENTS_CHANNEL)
    try:
        next_status = 0.0
        while True:
            now = time.monotonic()
            if now >= next_status:
                names = [name] if name else [store.text(n) for n in sorted(await r.smembers(store.STREAMS))]
                for n in names:
                    info = await call(stream_details, n)
                    await ws.send_json(_snapshot(info) if info else {"type": "status", "name": n, "state": "deleted"})
                next_status = now + PUSH_INTERVAL_S
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, next_status - time.monotonic()))
            if msg is not None:
                event = json.loads(msg["data"])
                if name is None or event.get("name") == name:
                    await ws.send_json({"type": "event", **event})
                    if event.get("event") in ("publish", "unpublish"):
                        next_status = 0.0  # follow a state change with fresh status at once
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass  # the client went away: nothing to keep
    finally:
        await pubsub.unsubscribe()
        await pubsub.reset()


@router.websocket("/api/v1/ws/streams/{name}")
async def ws_stream(ws: WebSocket, name: str) -> None:
    await _push(ws, name)


@router.websocket("/api/v1/ws/streams")
async def ws_streams(ws: WebSocket) -> None:
    await _push(ws, None)
