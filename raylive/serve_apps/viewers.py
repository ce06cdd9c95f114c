"""Viewer sessions: which session fetched what, counted in Redis without a round trip per request.

A session is the `sid` query parameter: the multivariant playlist hands a new viewer one and
writes it into the URIs of the media playlists it lists, so hls.js, Safari and ffmpeg carry it
along without cookies (which cross-origin players do not send). Media playlists, parts, segments
and init segments are the same bytes at the same URLs for every viewer, so a shared cache or CDN
can serve them. A session counts as a viewer from its first media playlist request (players
reload it every part or segment; a bare fetch of the multivariant playlist, e.g. a health probe,
is not watching), of a stream and rendition that exist; segment bytes count for a session only
when the request names it (`?sid=`). A sid is signed for its stream (HMAC under a secret kept in Redis), so only a fetch of that
stream's multivariant playlist makes one: made-up sids, or one stream's sid on another, are
served but not counted. Requests are recorded in memory and flushed once a second in one
pipeline per replica.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from .. import analytics, metrics, store

log = logging.getLogger(__name__)
SID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_URI_LINE = re.compile(r"^(?!#)(\S+)$", re.M)
_URI_ATTR = re.compile(r'URI="([^"]+)"')

# Raise the stream's peak_viewers to the current count, atomically.
_PEAK_LUA = """
local n = redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf')
local peak = tonumber(redis.call('HGET', KEYS[2], 'peak_viewers') or '0')
if n > peak and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'peak_viewers', n) end
return n
"""
# A session not seen for the history window leaves the stream's sorted sets: its latest request
# (trimmed by score) and its first (whose score is its start, so it goes by the other's members);
# the first-seen set of a stream watched around the clock grew without end before.
_FORGET_LUA = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 1, #gone, 5000 do
  redis.call('ZREM', KEYS[2], unpack(gone, i, math.min(i + 4999, #gone)))
end
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
"""


SID_NONCE_BYTES, SID_MAC_BYTES = 9, 6  # 20 characters; guessing a MAC: 1 in 2^48


async def sid_secret(redis: aioredis.Redis) -> bytes:
    await redis.set(store.SID_SECRET, secrets.token_hex(32), nx=True)
    secret = await redis.get(store.SID_SECRET)
    assert secret is not None
    return secret.encode() if isinstance(secret, str) else secret


def _sid_mac(secret: bytes, stream: str, nonce: bytes) -> bytes:
    return hmac.new(secret, stream.encode() + b"/" + nonce, hashlib.sha256).digest()[:SID_MAC_BYTES]


def new_sid(secret: bytes, stream: str) -> str:
    nonce = secrets.token_bytes(SID_NONCE_BYTES)
    return base64.urlsafe_b64encode(nonce + _sid_mac(secret, stream, nonce)).decode()


def valid_sid(sid: str | None) -> str | None:
    """A sid fit to carry in URLs (the player keeps what it was given); `counted_sid` says whether
    it may count as a viewer."""
    return sid if sid and SID_RE.match(sid) else None


def counted_sid(secret: bytes, stream: str, sid: str | None) -> bool:
    if sid is None or len(sid) != 4 * (SID_NONCE_BYTES + SID_MAC_BYTES) // 3:
        return False
    raw = base64.urlsafe_b64decode(sid)
    return hmac.compare_digest(raw[SID_NONCE_BYTES:], _sid_mac(secret, stream, raw[:SID_NONCE_BYTES]))


def tag_playlist(text: str, query: str) -> str:
    """Append ?`query` (sid=..., token=...) to every URI in a playlist (URI lines and URI="..." attributes)."""
    text = _URI_ATTR.sub(lambda m: f'URI="{m[1]}?{query}"', text)
    return _URI_LINE.sub(lambda m: f"{m[1]}?{query}", text)


@dataclass
class _Session:
    """What this replica saw of one viewer session since its last analytics heartbeat."""

    first: float
    last: float
    rendition: str
    user_agent: str
    bytes: int = 0
    started: bool = False
    beat_at: float = 0.0


class ViewerTracker:
    def __init__(self, redis: aioredis.Redis, flush_interval_s: float = 1.0) -> None:
        self.redis = redis
        self.flush_interval_s = flush_interval_s
        self._seen: dict[tuple[str, str, str], float] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}  # (stream, sid) -> analytics state
        self._reported: set[str] = set()  # streams whose viewers gauge this replica last set above 0
        self._task: asyncio.Task[None] | None = None

    def record(self, stream: str, rendition: str, sid: str, nbytes: int = 0, user_agent: str = "") -> None:
        now = time.time()
        self._seen[(stream, rendition, sid)] = now
        s = self._sessions.get((stream, sid))
        if s is None:
            s = self._sessions[(stream, sid)] = _Session(now, now, rendition, user_agent[:256])
        s.last = now
        s.bytes += nbytes
        if rendition != "audio":  # the rendition mix is about video quality
            s.rendition = rendition
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - counting must never break playback
                log.exception("viewer flush failed")

    def _analytics_events(self, p: aioredis.client.Pipeline, now: float, final: bool) -> None:
        """Session start, a heartbeat per session every HEARTBEAT_S while it is active, and end
        once it has been idle for the viewer window (queued on the flush pipeline)."""
        for (stream, sid), s in list(self._sessions.items()):
            common = {"stream": stream, "sid": sid, "rendition": s.rendition, "user_agent": s.user_agent}
            if not s.started:
                s.started = True
                analytics.emit(p, "viewer", ts=s.first, event="start", **common)
            if s.last > s.beat_at and (final or now - s.beat_at >= analytics.HEARTBEAT_S):
                analytics.emit(p, "viewer", ts=s.last, event="heartbeat", bytes=s.bytes, **common)
                s.bytes, s.beat_at = 0, now
            if now - s.last > store.VIEWER_WINDOW_S:
                analytics.emit(p, "viewer", ts=s.last, event="end", **common)
                del self._sessions[(stream, sid)]

    async def flush(self, final: bool = False) -> None:
        seen, self._seen = self._seen, {}
        if not seen and not self._sessions and not self._reported:
            return
        now = time.time()
        renditions: set[tuple[str, str]] = set()
        cutoff = now - store.VIEWER_HISTORY_S
        async with self.redis.pipeline(transaction=False) as p:
            self._analytics_events(p, now, final)
            for (stream, rendition, sid), t in seen.items():
                renditions.add((stream, rendition))
                p.zadd(store.viewers_last_key(stream), {sid: t})
                p.zadd(store.viewers_first_key(stream), {sid: t}, nx=True)
                p.pfadd(store.unique_viewers_key(stream), sid)
                p.zadd(store.viewers_last_key(stream, rendition), {sid: t})
            for stream, rendition in renditions:
                p.expire(store.viewers_last_key(stream, rendition), store.VIEWER_HISTORY_S)
                p.zremrangebyscore(store.viewers_last_key(stream, rendition), "-inf", cutoff)
            streams = {stream for stream, _ in renditions}
            for stream in streams:
                for key in (store.viewers_last_key(stream), store.viewers_first_key(stream), store.unique_viewers_key(stream)):
                    p.expire(key, store.VIEWER_HISTORY_S)
                p.eval(_FORGET_LUA, 2, store.viewers_last_key(stream), store.viewers_first_key(stream), cutoff)
            # Current viewers (and the peak) of every stream this replica serves or served last time.
            report = sorted(streams | {s for s, _ in self._sessions} | self._reported)
            for stream in report:
                p.eval(_PEAK_LUA, 2, store.viewers_last_key(stream), store.live_key(stream), now - store.VIEWER_WINDOW_S)
            results = await p.execute()
        counts = dict(zip(report, results[len(results) - len(report) :], strict=True))
        for stream, n in counts.items():
            metrics.set_gauge("raylive_viewers", int(n), stream=stream)
        self._reported = {s for s, n in counts.items() if n}
