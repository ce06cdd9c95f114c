"""Playback Serve app: HLS playlists and CMAF segments for viewers, read from Redis.

Any replica on any node can serve any stream because the stream actors write every file to
Redis. Segments and init segments are immutable (their names carry the publish epoch), so each
replica keeps an LRU cache of them; playlists are always read fresh.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from datetime import UTC, datetime

import ray
import redis
import redis.asyncio as aioredis
from ray import serve
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import metrics, store
from ..runtime.media import PLAYLIST_TYPE, STREAM_NAME, mp4_type
from ..runtime.packaging.dash import MPD_TYPE, UTC_TIMING_URL
from ..runtime.packaging.hls import delta_update, playlist_edge
from ..settings import HookSettings
from .access import AccessRefused, PlaybackAccess
from .blocking import PlaylistWatch
from .media_files import MediaFiles
from .thumbnails import Thumbnails
from .viewers import ViewerTracker, counted_sid, new_sid, sid_secret, tag_playlist, valid_sid
from .vod import VodFiles
from .vod import match as vod_match

IMMUTABLE = "public, max-age=31536000, immutable"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range, Origin, Accept",
    "Access-Control-Expose-Headers": "Content-Length, Content-Type",
}
PATH_RE = re.compile(
    rf"^/live/(?P<name>{STREAM_NAME})/"
    r"(?:(?P<master>index\.m3u8|dvr\.m3u8|[a-z0-9_]{1,32}\.m3u8)|(?P<mpd>index\.mpd|dvr\.mpd|[a-z0-9_]{1,32}\.mpd)|(?P<thumbnail>thumbnail\.jpg)|(?P<rendition>[a-z0-9_]{1,32})/"
    r"(?P<file>index\.m3u8|dvr\.m3u8|init-[0-9a-f]{1,16}\.mp4|[0-9a-f]{1,16}-\d{1,12}(?:\.\d{1,4})?\.m4s))$"
)
MSN_RE = re.compile(r"^\d{1,12}$")
TIME_PATH = "/live/time"  # UTCTiming (http-iso) for DASH players
REDIS_CONNECTIONS = 64  # per Redis per replica
_MPD_TEMPLATE = re.compile(r'\b(media|initialization)="([^"?]+)"')
PART_WAIT_S = 3.0  # a segment being streamed part by part ends early if no part comes for this long


def _pool(url: str) -> aioredis.BlockingConnectionPool:
    return aioredis.BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=5)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers={**CORS, "Cache-Control": "no-store"})


class PlaybackApp:
    def __init__(
        self,
        redis_url: str,
        segment_cache_mb: int = 256,
        hooks: HookSettings | None = None,
        recording_url: str = "",
        dvr_window_s: float = 0,
    ) -> None:
        # Bounded pools that wait for a free connection: 100 viewers asking at once made redis-py's
        # default pool refuse ("Too many connections", a 500 for the viewer).
        self.redis = aioredis.Redis(connection_pool=_pool(redis_url))  # stream state, viewers
        with redis.Redis.from_url(redis_url) as r:
            self.media = aioredis.Redis(connection_pool=_pool(store.media_url(r, redis_url)))  # segments and playlists
        self.cache = MediaFiles(self.media, segment_cache_mb << 20)
        self.viewers = ViewerTracker(self.redis)
        self.watch = PlaylistWatch(self.media)
        self.thumbnails = Thumbnails(self.media)
        self.vod = VodFiles(recording_url, self.cache, self.redis, dvr_window_s) if recording_url else None
        self.sid_secret = b""  # read from Redis on the first request
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()  # (kind, status) since last report
        # Which node answered: ops (and the multi-node test) can tell replicas apart.
        self.node_id = ray.get_runtime_context().get_node_id()
        self.access = PlaybackAccess(redis_url, self.redis, hooks, self.node_id)
        self.presence = store.presence_field("playback", serve.get_replica_context().replica_id.unique_id)
        # Serve runs the constructor on the replica's event loop.
        self._report_task = asyncio.get_running_loop().create_task(self._report())

    async def __del__(self) -> None:
        """Serve calls this when the replica stops (drain, shutdown): keep the last second's counts."""
        self._report_task.cancel()
        await self.redis.hdel(store.PRESENCE, self.presence)
        await self.viewers.flush(final=True)

    async def __call__(self, request: Request) -> Response:
        response = await self._handle(request)
        response.headers["X-Served-By"] = self.node_id[:12]
        path = request.url.path
        kinds = ((".m3u8", "playlist"), (".m4s", "segment"), (".mp4", "init"), (".jpg", "thumbnail"))
        kind = next((k for ext, k in kinds if path.endswith(ext)), "other")
        self.requests[(kind, str(response.status_code))] += 1  # counted here, reported once a second
        return response

    async def _report(self) -> None:
        """Once a second: request counts to Ray metrics, this replica's presence to Redis."""
        while True:
            await asyncio.sleep(1.0)
            counts, self.requests = self.requests, collections.Counter()
            for (kind, status), n in counts.items():
                metrics.inc("raylive_playback_requests_total", n, kind=kind, status=status)
            await self.watch.drop_idle()
            try:
                await self.redis.hset(store.PRESENCE, self.presence, store.presence_value("playback", self.node_id))
            except Exception:  # noqa: BLE001 - Redis away for a moment: next round
                continue

    async def _handle(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={**CORS, "Access-Control-Max-Age": "86400"})
        if request.method not in ("GET", "HEAD"):
            return _error(405, "method not allowed")
        if request.url.path == TIME_PATH:  # the MPD's UTCTiming clock
            now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            return Response(now, media_type="text/plain", headers={**CORS, "Cache-Control": "no-store"})
        m = PATH_RE.match(request.url.path)
        if m is None and self.vod is not None and (m := vod_match(request.url.path)) is not None:
            try:
                token = await self.access.token(request, m["name"])
            except AccessRefused as refused:
                return _error(refused.status, refused.reason)
            return await self.vod.respond(m, CORS, token, request.headers.get("range", ""), request.query_params.get("t", ""))
        if m is None:
            return _error(404, "not found")
        name = m["name"]
        sid = valid_sid(request.query_params.get("sid"))
        if not self.sid_secret:
            self.sid_secret = await sid_secret(self.redis)
        viewer = sid if counted_sid(self.sid_secret, name, sid) else None
        try:
            token = await self.access.token(request, name)
            if (m["master"] or m["mpd"]) and viewer is None:  # a viewer's session starts
                await self.access.admit(request, name)
        except AccessRefused as refused:
            return _error(refused.status, refused.reason)
        dvr = m["master"] == "dvr.m3u8" or m["mpd"] == "dvr.mpd"
        if dvr and (self.vod is None or not self.vod.dvr_window_s):
            return _error(404, "no DVR here: set recording.dvr_window_s (and record the stream)")
        if m["master"]:
            # A new viewer gets a session here; the playlists carry it into every later URL.
            rel = "index.m3u8" if dvr else m["master"]  # NAME.m3u8: a processor's output (runtime/frame_out.py)
            return await self._playlist(name, rel, viewer or new_sid(self.sid_secret, name), token, dvr)
        if m["mpd"]:
            rel = "index.mpd" if dvr else m["mpd"]
            response = await self._mpd(request, name, rel, sid or new_sid(self.sid_secret, name), token, dvr)
            if viewer and response.status_code == 200:  # a DASH player reloading its MPD (rendition unknown)
                self.viewers.record(name, "", viewer, 0, request.headers.get("user-agent", ""))
            return response
        if m["thumbnail"]:
            if (data := await self.thumbnails.get(name)) is None:
                return _error(404, f"no thumbnail of {name}: it is not live")
            return Response(data, media_type="image/jpeg", headers={**CORS, "Cache-Control": "public, max-age=5"})
        rel = f"{m['rendition']}/{m['file']}"
        if m["file"] in ("index.m3u8", "dvr.m3u8"):
            dvr = m["file"] == "dvr.m3u8" and self.vod is not None and self.vod.dvr_window_s > 0
            response = await self._media_playlist(name, f"{m['rendition']}/index.m3u8", request.query_params, token, dvr)
            if viewer and response.status_code == 200:  # a stream and rendition that exist
                self.viewers.record(name, m["rendition"], viewer, 0, request.headers.get("user-agent", ""))
            return response
        key = store.file_key(name, rel)
        data = await self.cache.file(key)
        if data is None:
            if request.method == "GET" and "." not in m["file"].removesuffix(".m4s"):  # LL-DASH: a segment being written
                parts = await self.watch.segment_being_written(name, m["rendition"], m["file"], self.cache.file, PART_WAIT_S)
                if parts is not None:
                    return StreamingResponse(parts, media_type=mp4_type(m["rendition"]), headers={**CORS, "Cache-Control": "no-store"})
            elif m["file"].count(".") == 2 and await self.watch.part_listed(name, m["rendition"], m["file"], PART_WAIT_S):
                data = await self.cache.fetch(key)  # a preload-hinted part: held until it was written
            # Left the media Redis: the recording may have it (DVR; a segment there was a 404 unless
            # this replica had kept it).
            if data is None and self.vod is not None:
                data = await self.vod.recorded(name, rel)
            if data is None:
                return _error(404, "segment not found (expired or never produced)")
        if viewer:
            self.viewers.record(name, m["rendition"], viewer, len(data), request.headers.get("user-agent", ""))
        ctype = mp4_type(m["rendition"])
        body = b"" if request.method == "HEAD" else data
        cache = IMMUTABLE if not token else "private, max-age=31536000, immutable"  # not for a cache that drops the query
        return Response(body, media_type=ctype, headers={**CORS, "Cache-Control": cache, "Content-Length": str(len(data))})

    async def _playlist(self, name: str, rel: str, sid: str, token: str, dvr: bool = False) -> Response:
        data = await self.media.get(store.file_key(name, rel))
        if data is None:
            return await self._not_live(name)
        # Live playlists change every segment: let a CDN coalesce requests for a moment only.
        max_age = 30 if b"#EXT-X-ENDLIST" in data else 2
        query = f"sid={sid}&token={token}" if token else f"sid={sid}"
        text = tag_playlist(store.text(data), query)  # per-viewer URLs: not for shared caches
        if dvr:
            text = text.replace("/index.m3u8?", "/dvr.m3u8?")
        return Response(text, media_type=PLAYLIST_TYPE, headers={**CORS, "Cache-Control": f"private, max-age={max_age}"})

    async def _mpd(self, request: Request, name: str, rel: str, sid: str, token: str, dvr: bool = False) -> Response:
        data = await self.media.get(store.file_key(name, rel))
        if data is None:
            return await self._not_live(name)
        text = store.text(data)
        if dvr and self.vod is not None:
            text = await self.vod.dvr_mpd(name, text)
        text = text.replace(UTC_TIMING_URL, f"{request.url.scheme}://{request.url.netloc}{TIME_PATH}")
        query = f"sid={sid}"
        if token:  # players send no headers with segments: the token goes into every URL
            text = _MPD_TEMPLATE.sub(lambda t: f'{t[1]}="{t[2]}?token={token}"', text)
            query += f"&amp;token={token}"
        if 'type="dynamic"' not in text:
            return Response(text, media_type=MPD_TYPE, headers={**CORS, "Cache-Control": f"{'private' if token else 'public'}, max-age=30"})
        # A DASH player reloads the MPD from its Location: the session travels there, as HLS's
        # does in the media playlist URLs.
        location = f"<Location>{request.url.scheme}://{request.url.netloc}{request.url.path}?{query}</Location>"
        text = text.replace("\n  <Period", f"\n  {location}\n  <Period", 1)
        return Response(text, media_type=MPD_TYPE, headers={**CORS, "Cache-Control": "private, max-age=1"})

    async def _not_live(self, name: str) -> Response:
        state = await self.redis.hget(store.live_key(name), "state")
        if state == b"live":
            return _error(404, f"stream {name} is live but has no playable segment yet")
        return _error(404, f"stream {name} is not live")

    async def _media_playlist(self, name: str, rel: str, query: QueryParams, token: str, dvr: bool = False) -> Response:
        """A media playlist, the same for every viewer (so a shared cache may serve it); with LL-HLS
        delivery directives, held until it holds the part asked for (RFC 8216bis 6.2.5.2)."""
        msn_raw, part_raw = query.get("_HLS_msn"), query.get("_HLS_part")
        if part_raw is not None and msn_raw is None:
            return _error(400, "_HLS_part needs _HLS_msn")
        if (msn_raw is not None and not MSN_RE.match(msn_raw)) or (part_raw is not None and not MSN_RE.match(part_raw)):
            return _error(400, "_HLS_msn and _HLS_part are non-negative integers")
        data = await self.watch.playlist(name, rel, subscribe=msn_raw is not None)
        if data is None:
            return await self._not_live(name)
        edge = playlist_edge(data.decode())
        cache = "public, max-age=30" if edge.ended else "public, max-age=1"
        if msn_raw is not None:
            msn, part = int(msn_raw), None if part_raw is None else int(part_raw)
            if not edge.has(msn, part):
                if edge.too_far(msn):
                    return _error(400, f"_HLS_msn={msn} is more than two segments beyond this playlist's last ({edge.next_msn - 1})")
                started = time.monotonic()
                # The spec's bound on holding: three target durations, then 503.
                held = await self.watch.wait(name, rel, msn, part, 3 * max(1, edge.target_duration))
                metrics.observe("raylive_playlist_wait_seconds", time.monotonic() - started, kind="part" if part is not None else "segment")
                if held is None:
                    return _error(503, f"segment {msn} part {part} of {name} did not come in time")
                data = held
            # The answer to a blocking request stands for its URL: shared caches may keep it.
            cache = f"public, max-age={6 * max(1, edge.target_duration)}"
        if dvr and self.vod is not None:
            data = (await self.vod.dvr(name, rel.split("/", 1)[0], data.decode())).encode()
        elif query.get("_HLS_skip") in ("YES", "v2"):
            data = delta_update(data.decode()).encode()
        if token:  # players send no headers with segments: the token goes into every URI
            data = tag_playlist(data.decode(), f"token={token}").encode()
            cache = cache.replace("public", "private")
        return Response(data, media_type=PLAYLIST_TYPE, headers={**CORS, "Cache-Control": cache})


PlaybackDeployment = serve.deployment(name="playback")(PlaybackApp)
