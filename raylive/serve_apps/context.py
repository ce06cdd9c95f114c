"""What every control API route shares: the replica's Redis clients and settings, and the calls
into `raylive.store` (synchronous, so on a worker thread)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import redis
from fastapi import HTTPException

from .. import store

# Per replica, set by ControlApp.__init__ (module-level because Serve serves a copy of the app).
STATE = SimpleNamespace(
    redis=None,
    sync_redis=None,
    media_redis=None,
    admin_digest="",
    rtmp_port=1935,
    renditions=["source"],
    dashboard_url=None,
    recordings=None,
)


async def call(fn: Any, *args: Any) -> Any:
    """Run a (synchronous) `raylive.store` function on a worker thread with the shared pool."""
    return await asyncio.to_thread(fn, STATE.sync_redis, *args)


def stream_details(r: redis.Redis, name: str) -> dict[str, Any] | None:
    info = store.get_stream(r, name)
    if info is not None:
        info.update(store.viewer_details(r, name, list(info.get("renditions", {}))))
    return info


async def stream(name: str) -> dict[str, Any]:
    info = await call(stream_details, name)
    if info is None:
        raise HTTPException(404, f"no stream named {name!r}")
    return info  # type: ignore[no-any-return]
