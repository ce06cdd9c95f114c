"""Recordings played back (VOD) by the playback app, from the recording storage:

    /live/NAME/recordings/REC/index.m3u8           the multivariant playlist the stream had
    /live/NAME/recordings/REC/index.mpd            a static MPD (once the recording ended)
    /live/NAME/recordings/REC/RENDITION/index.m3u8  EVENT while recording, VOD once it ended
    /live/NAME/recordings/REC/RENDITION/FILE        init and media segments (immutable)
    /live/NAME/recordings/REC/thumbnail.jpg?t=S     the frame at S seconds into it (the keyframe starting that segment)
    /live/NAME/clips/CLIP.mp4                       a clip (progressive MP4; byte ranges for seeking)

and the DVR of a recorded live stream: `/live/NAME/dvr.m3u8` is its multivariant playlist with
`RENDITION/dvr.m3u8` media playlists, each the live one (parts, preload hint, blocking reload)
with the recording's earlier segments before it (through the publisher's reconnects), up to
`recording.dvr_window_s`, and `/live/NAME/dvr.mpd` the live MPD reaching as far back
(`runtime/dvr.py`); a live segment URL whose file has left the media Redis is served from the recording. The
live edge stays where it is; a player may seek back.
Playlists are made from the recording's index, which lists only stored segments."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from starlette.responses import JSONResponse, Response

from ..actors.clips import CLIPS
from ..actors.recorder import RecordingStore
from ..runtime.dvr import dvr_mpd, dvr_playlist
from ..runtime.media import PLAYLIST_TYPE, STREAM_NAME, mp4_type
from ..runtime.packaging.dash import MPD_TYPE, UTC_TIMING_URL
from ..runtime.recording import RECORDING, RECORDING_ID, Recording
from ..store import live_key
from .viewers import tag_playlist

VOD_RE = re.compile(
    rf"^/live/(?P<name>{STREAM_NAME})/recordings/(?P<rec>{RECORDING_ID})/"
    r"(?:(?P<master>index\.m3u8)|(?P<mpd>index\.mpd)|(?P<thumbnail>thumbnail\.jpg)|"
    r"(?P<rendition>[a-z0-9_]{1,32})/(?P<file>index\.m3u8|init-[0-9a-f]{1,16}\.mp4|[0-9a-f]{1,16}-\d{1,12}\.m4s))$"
)
CLIP_RE = re.compile(rf"^/live/(?P<name>{STREAM_NAME})/clips/(?P<clip>[0-9a-f]{{8}})\.mp4$")
RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def match(path: str) -> re.Match[str] | None:
    return VOD_RE.match(path) or CLIP_RE.match(path)


_MPD_URIS = re.compile(r'\b(media|initialization)="([^"?]+)"')
INDEX_FRESH_S = 1.0  # a recording being written: its index is read again after this long


class VodFiles:
    def __init__(self, url: str, cache: Any, redis: Any = None, dvr_window_s: float = 0) -> None:
        self.store = RecordingStore(url)
        self.cache = cache  # the replica's LRU of immutable files (get/put)
        self.redis = redis  # the state Redis (which recording a live stream writes)
        self.dvr_window_s = dvr_window_s
        self._indexes: dict[tuple[str, str], tuple[float, Recording | None]] = {}
        self._current: dict[str, tuple[float, str]] = {}  # stream -> (when asked, its recording's id or "")
        self._dvr: dict[tuple[str, str], tuple[str, tuple[str, int], str]] = {}  # (stream, rendition) -> (live, recording, DVR text)

    async def current(self, name: str) -> Recording | None:
        """The recording the stream's current publish writes, if any (asked of Redis once a second)."""
        now = time.monotonic()
        asked = self._current.get(name)
        if asked is None or now - asked[0] >= INDEX_FRESH_S:
            raw = await self.redis.hget(live_key(name), "recording") if self.redis is not None else None
            asked = self._current[name] = (now, raw.decode() if raw else "")
        return await self.recording(name, asked[1]) if asked[1] else None

    async def dvr(self, name: str, rendition: str, live: str) -> str:
        """The live media playlist reaching back into the recording (`runtime/dvr.py`), made once per
        new live playlist and recording length, whatever the number of viewers."""
        rec = await self.current(name)
        made = self._dvr.get((name, rendition))
        if made is not None and made[0] == live and rec is not None and made[1] == (rec.id, rec.entries):
            return made[2]
        text = dvr_playlist(live, rec, rendition, self.dvr_window_s)
        if len(self._dvr) > 1000:
            self._dvr.clear()
        self._dvr[(name, rendition)] = (live, (rec.id, rec.entries) if rec else ("", 0), text)
        return text

    async def dvr_mpd(self, name: str, live: str) -> str:
        """The live MPD reaching back into the recording (`runtime/dvr.py`), made once per new live MPD
        and recording length."""
        rec = await self.current(name)
        made = self._dvr.get((name, "index.mpd"))
        if made is not None and made[0] == live and rec is not None and made[1] == (rec.id, rec.entries):
            return made[2]
        text = live if rec is None else dvr_mpd(live, rec, self.dvr_window_s)
        self._dvr[(name, "index.mpd")] = (live, (rec.id, rec.entries) if rec else ("", 0), text)
        return text

    async def recorded(self, name: str, rel: str) -> bytes | None:
        """A live segment or init the media Redis no longer holds, from the current recording."""
        rec = await self.current(name)
        if rec is None:
            return None
        key = f"vod:{name}/{rec.id}/{rel}"
        data: bytes | None = self.cache.get(key) or await asyncio.to_thread(self.store.get, name, rec.id, rel)
        if data is not None:
            self.cache.put(key, data)
        return data

    async def recording(self, name: str, rec: str) -> Recording | None:
        now = time.monotonic()
        cached = self._indexes.get((name, rec))
        if cached is not None and (now - cached[0] < INDEX_FRESH_S or (cached[1] is not None and cached[1].state != RECORDING)):
            return cached[1]
        found = await asyncio.to_thread(self.store.recording, name, rec, True, cached[1] if cached else None)
        if len(self._indexes) > 1000:
            self._indexes.clear()
        self._indexes[(name, rec)] = (now, found)
        return found

    async def respond(self, m: re.Match[str], headers: dict[str, str], token: str = "", range_header: str = "", at: str = "") -> Response:
        """`token`: a signed stream's playback token, which every URI in a playlist or MPD then carries."""
        if m.re is CLIP_RE:
            return await self._clip(m["name"], m["clip"], headers, range_header)
        name, rec_id = m["name"], m["rec"]
        rec = await self.recording(name, rec_id)
        if rec is None:
            return _missing(f"no recording {rec_id} of {name}", headers)
        live = rec.state == RECORDING
        cache = "public, max-age=1" if live else "public, max-age=3600"
        if m["thumbnail"]:
            return await self._thumbnail(rec, at, headers)
        if m["mpd"]:
            mpd = rec.mpd() if not live else None
            if mpd is None:
                return _missing(f"recording {rec_id} has no MPD {'until it ends' if live else ''}".strip(), headers)
            mpd = mpd.replace(UTC_TIMING_URL, "/live/time")
            if token:
                mpd = _MPD_URIS.sub(lambda u: f'{u[1]}="{u[2]}?token={token}"', mpd)
            return Response(mpd, media_type=MPD_TYPE, headers={**headers, "Cache-Control": cache})
        if m["master"] or m["file"] == "index.m3u8":
            text = rec.multivariant if m["master"] else rec.media_playlist(m["rendition"])
            if not text:
                return _missing(f"recording {rec_id} has no {m['rendition'] or 'playlist'} yet", headers)
            text = tag_playlist(text, f"token={token}") if token else text
            return Response(text, media_type=PLAYLIST_TYPE, headers={**headers, "Cache-Control": cache})
        rel = f"{m['rendition']}/{m['file']}"
        key = f"vod:{name}/{rec_id}/{rel}"
        data = self.cache.get(key)
        if data is None:
            data = await asyncio.to_thread(self.store.get, name, rec_id, rel)
            if data is None:
                return _missing(f"no {rel} in recording {rec_id}", headers)
            self.cache.put(key, data)
        return Response(
            data, media_type=mp4_type(m["rendition"]), headers={**headers, "Cache-Control": "public, max-age=31536000, immutable"}
        )

    async def _thumbnail(self, rec: Recording, at: str, headers: dict[str, str]) -> Response:
        """One keyframe decoded (the one that starts the segment holding `t`), kept in the LRU."""
        from ..runtime.frames import segment_jpeg  # PyAV, here only

        video = rec.video_rendition()
        try:
            t = float(at or 0)
        except ValueError:
            t = -1.0
        start, seg = 0.0, None
        for s in rec.segments.get(video or "", []):
            if start <= t < start + s["duration_s"]:
                seg = s
                break
            start += s["duration_s"]
        if seg is None:
            return _missing(f"no frame at t={at!r} in recording {rec.id} ({rec.duration_s():.1f} s)", headers)
        key = f"vod:{rec.stream}/{rec.id}/{video}/{seg['uri']}.jpg"
        jpeg = self.cache.get(key)
        if jpeg is None:
            init, data = await asyncio.gather(
                *(asyncio.to_thread(self.store.get, rec.stream, rec.id, f"{video}/{u}") for u in (seg["init"], seg["uri"]))
            )
            if init is None or data is None:
                return _missing(f"recording {rec.id} lost that segment", headers)
            jpeg = await asyncio.to_thread(segment_jpeg, init, data)
            self.cache.put(key, jpeg)
        return Response(jpeg, media_type="image/jpeg", headers={**headers, "Cache-Control": "public, max-age=31536000, immutable"})

    async def _clip(self, name: str, clip: str, headers: dict[str, str], range_header: str) -> Response:
        key = f"clip:{name}/{clip}"
        data = self.cache.get(key) or await asyncio.to_thread(self.store.get, name, CLIPS, f"{clip}.mp4")
        if data is None:
            return _missing(f"no clip {clip} of {name}", headers)
        self.cache.put(key, data)
        headers = {**headers, "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=31536000, immutable"}
        r = RANGE_RE.match(range_header.strip())
        if r is None or not (r[1] or r[2]):
            return Response(data, media_type="video/mp4", headers=headers)
        size = len(data)
        first, last = (int(r[1]), min(int(r[2] or size - 1), size - 1)) if r[1] else (max(0, size - int(r[2])), size - 1)
        if first > last:
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        return Response(
            data[first : last + 1],
            status_code=206,
            media_type="video/mp4",
            headers={**headers, "Content-Range": f"bytes {first}-{last}/{size}"},
        )


def _missing(message: str, headers: dict[str, str]) -> Response:
    return JSONResponse({"error": message}, status_code=404, headers={**headers, "Cache-Control": "no-store"})
