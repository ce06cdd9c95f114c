"""Viewer session ids: signed for their stream, so only raylive's own can count as viewers; the
viewer sets in Redis keep the history window and no more."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from raylive import store
from raylive.serve_apps.viewers import ViewerTracker, counted_sid, new_sid, valid_sid

pytestmark = pytest.mark.timeout(60)


def test_a_sid_counts_only_for_the_stream_it_was_made_for() -> None:
    secret = b"s" * 64
    sid = new_sid(secret, "cam1")
    assert valid_sid(sid) == sid and len(sid) == 20
    assert counted_sid(secret, "cam1", sid)
    assert not counted_sid(secret, "cam2", sid)  # another stream's
    assert not counted_sid(b"t" * 64, "cam1", sid)  # another secret's
    assert not counted_sid(secret, "cam1", sid[:-1] + ("A" if sid[-1] != "A" else "B"))
    assert not counted_sid(secret, "cam1", "madeup0001abcdefgh")
    assert not counted_sid(secret, "cam1", None)


def test_sessions_older_than_the_history_leave_every_viewer_set_of_a_stream_always_watched(redis_url: str) -> None:
    """A stream watched around the clock keeps its viewer sets alive (each flush refreshes their
    expiry), so what is older than the history window must leave them: before, the first-seen set
    and the per-rendition sets only ever grew (Redis state +0.7 MB in a 60-min soak of 1,512 viewers)."""

    async def scenario() -> dict[str, Any]:
        r = aioredis.Redis.from_url(redis_url)
        old = time.time() - store.VIEWER_HISTORY_S - 60
        gone = [f"old{i:05d}" for i in range(12_000)]  # more than one ZREM batch of the script
        await r.zadd(store.viewers_last_key("cam1"), dict.fromkeys(gone, old))
        await r.zadd(store.viewers_first_key("cam1"), dict.fromkeys(gone, old - 30))
        await r.zadd(store.viewers_last_key("cam1", "720p"), dict.fromkeys(gone, old))
        await r.zadd(store.viewers_first_key("cam1"), {"viewer1": time.time() - 50})  # watching for 50 s
        tracker = ViewerTracker(r)
        tracker.record("cam1", "720p", "viewer1", 1000)
        await tracker.flush()
        with redis.Redis.from_url(redis_url) as sync:
            out = {
                "last": await r.zrange(store.viewers_last_key("cam1"), 0, -1),
                "first": await r.zrange(store.viewers_first_key("cam1"), 0, -1),
                "720p": await r.zrange(store.viewers_last_key("cam1", "720p"), 0, -1),
                "details": store.viewer_details(sync, "cam1", ["720p"]),
            }
        await r.aclose()
        return out

    out = asyncio.run(scenario())
    assert out["last"] == out["first"] == out["720p"] == [b"viewer1"]
    assert out["details"]["viewers_by_rendition"] == {"720p": 1} and 49 <= out["details"]["watch_time_s"] <= 60
