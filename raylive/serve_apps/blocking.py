"""Blocking playlist reload (LL-HLS `_HLS_msn`/`_HLS_part`) without a Redis round trip per viewer.

Each stream actor publishes every media playlist it writes on `store.playlists_channel(NAME)`.
A playback replica subscribes to a stream's channel while its viewers ask for that stream's
playlists, keeps the newest text of each, and answers from it: a request for a part that
exists is answered at once, one for the next part is held until the message that lists it
arrives — one message per playlist write per replica, whatever the number of waiting viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from .. import store
from ..runtime.packaging.hls import PlaylistEdge, is_upcoming_part, playlist_edge, segment_parts
from .media_files import SharedGets

log = logging.getLogger(__name__)
IDLE_UNSUBSCRIBE_S = 30.0  # a stream nobody asked about for this long: its channel is dropped


FRESH_S = 5.0  # a text newer than this answers a non-blocking request without Redis


@dataclass
class _Latest:
    text: bytes
    edge: PlaylistEdge
    received: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set and replaced at each new text


class PlaylistWatch:
    def __init__(self, media: aioredis.Redis) -> None:
        self.media = media
        self._gets, self._gets_subscribed = SharedGets(media), SharedGets(media)
        self._pubsub = media.pubsub()
        self._latest: dict[tuple[str, str], _Latest] = {}  # (stream, playlist path)
        self._streams: dict[str, float] = {}  # subscribed stream -> last asked about (monotonic)
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def playlist(self, name: str, rel: str, subscribe: bool = False) -> bytes | None:
        """The newest text of a media playlist: from the subscription when there is one (with
        `subscribe`, made now: LL-HLS players ask every part), else from Redis, one GET for the
        viewers asking at the same moment."""
        if subscribe and name not in self._streams:
            # Only for a stream that has this playlist: a made-up name leaves no subscription.
            if await self._gets.get(store.file_key(name, rel)) is None:
                return None
            await self._subscribe(name)
        latest = self._latest.get((name, rel)) if name in self._streams else None
        if latest is not None and time.monotonic() - latest.received < FRESH_S:
            self._streams[name] = time.monotonic()
            return latest.text
        # A text read after subscribing is the newest until a message brings a newer one; a GET
        # some viewer began before is not.
        subscribed = name in self._streams
        data = await (self._gets_subscribed if subscribed else self._gets).get(store.file_key(name, rel))
        if data is not None and subscribed and latest is None:
            self._latest.setdefault((name, rel), _Latest(data, playlist_edge(data.decode())))
        return data

    async def wait(self, name: str, rel: str, msn: int, part: int | None, timeout_s: float) -> bytes | None:
        """The playlist once it holds segment `msn` (or part `part` of it); None after `timeout_s`
        (or when the stream has no such playlist)."""
        key = (name, rel)
        latest = self._latest.get(key)
        if latest is None:  # nothing heard since subscribing: what Redis has now
            await self.playlist(name, rel, subscribe=True)
            if (latest := self._latest.get(key)) is None:
                return None
        deadline = time.monotonic() + timeout_s
        while not latest.edge.has(msn, part):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(latest.changed.wait(), remaining)
            newer = self._latest.get(key)
            if newer is None:  # dropped meanwhile
                return None
            latest = newer
        self._streams[name] = time.monotonic()
        return latest.text

    async def part_listed(self, name: str, rendition: str, part: str, timeout_s: float) -> bool:
        """Hold a request for a part that is about to be written (a preload hint) until the
        playlist lists it; False at once for any other missing part, or after `timeout_s`."""
        key = (name, f"{rendition}/index.m3u8")
        data = await self.playlist(name, key[1], subscribe=True)
        latest = self._latest.get(key)
        if data is None or latest is None or not is_upcoming_part(data.decode(), part):
            return False
        listed = f'URI="{part}"'.encode()
        deadline = time.monotonic() + timeout_s
        while listed not in latest.text.split(b"#EXT-X-PRELOAD-HINT", 1)[0]:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or latest.edge.ended:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(latest.changed.wait(), remaining)
            newer = self._latest.get(key)
            if newer is None:
                return False
            latest = newer
        self._streams[name] = time.monotonic()
        return True

    async def parts_of(self, name: str, rendition: str, segment: str, timeout_s: float) -> AsyncIterator[str]:
        """The part URIs of `segment` (being written) as the playlist lists them, until it is
        complete (LL-DASH serves such a segment part by part); stops early after `timeout_s`
        without a new part."""
        key = (name, f"{rendition}/index.m3u8")
        sent = 0
        while True:
            latest = self._latest.get(key)
            if latest is None:
                await self.playlist(name, key[1], subscribe=True)
                if (latest := self._latest.get(key)) is None:
                    return
            parts, complete = segment_parts(latest.text.decode(), segment)
            for uri in parts[sent:]:
                yield uri
            sent = max(sent, len(parts))
            if complete or latest.edge.ended:
                return
            try:
                await asyncio.wait_for(latest.changed.wait(), timeout_s)
            except TimeoutError:
                return
            self._streams[name] = time.monotonic()

    async def segment_being_written(
        self, name: str, rendition: str, file: str, read: Callable[[str], Awaitable[bytes | None]], timeout_s: float
    ) -> AsyncIterator[bytes] | None:
        """LL-DASH: a segment requested while it is written (its MPD says it is available a part
        after it began) is sent part by part as the parts are made (chunked transfer): its parts'
        bytes through `read(key)`, or None when it is neither being written nor about to be."""
        first_part = f"{file.removesuffix('.m4s')}.0.m4s"
        if not await self.media.exists(store.file_key(name, f"{rendition}/{first_part}")) and not await self.part_listed(
            name, rendition, first_part, timeout_s
        ):
            return None

        async def body() -> AsyncIterator[bytes]:
            async for uri in self.parts_of(name, rendition, file, timeout_s):
                data = await read(store.file_key(name, f"{rendition}/{uri}"))
                if data is None:
                    return
                yield data

        return body()

    async def _subscribe(self, name: str) -> None:
        if name in self._streams:
            self._streams[name] = time.monotonic()
            return
        pending = self._subscribing.get(name)
        if pending is None:
            pending = self._subscribing[name] = asyncio.get_running_loop().create_future()
            try:
                await self._pubsub.subscribe(store.playlists_channel(name))
                self._streams[name] = time.monotonic()
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.get_running_loop().create_task(self._read())
                pending.set_result(None)
            except Exception as exc:  # noqa: BLE001 - the waiters see it too
                pending.set_exception(exc)
                raise
            finally:
                del self._subscribing[name]
        else:
            await asyncio.shield(pending)

    async def _read(self) -> None:
        while self._streams:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except Exception:  # noqa: BLE001 - Redis away for a moment: the next message, or Redis on request
                log.warning("playlist subscription lost; re-subscribing", exc_info=True)
                self._latest.clear()
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self._pubsub.subscribe(*(store.playlists_channel(n) for n in self._streams))
                continue
            if message is None or message.get("type") != "message":
                continue
            name = store.text(message["channel"]).rpartition(":")[2]
            rel, _, data = bytes(message["data"]).partition(b"\n")
            self._update((name, rel.decode()), data)

    def _update(self, key: tuple[str, str], data: bytes) -> None:
        previous = self._latest.get(key)
        self._latest[key] = _Latest(data, playlist_edge(data.decode()))
        if previous is not None:
            previous.changed.set()  # wakes every request held on the older text

    async def drop_idle(self) -> None:
        """Unsubscribe from streams nobody asked about lately (called once a second)."""
        now = time.monotonic()
        idle = [n for n, t in self._streams.items() if now - t > IDLE_UNSUBSCRIBE_S]
        if not idle:
            return
        for n in idle:
            del self._streams[n]
            for key in [k for k in self._latest if k[0] == n]:
                self._latest[key].changed.set()
                del self._latest[key]
        with contextlib.suppress(Exception):
            await self._pubsub.unsubscribe(*(store.playlists_channel(n) for n in idle))
