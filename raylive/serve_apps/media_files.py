"""A playback replica's immutable files (segments, parts, init segments): from the media Redis
through a byte-bounded LRU, one GET per file at a time whatever the number of viewers asking."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import redis.asyncio as aioredis


class SharedGets:
    """One GET of a key at a time: the viewers asking for it at the same moment (every LL-HLS
    viewer wants the new part at once) share it, and a viewer who leaves meanwhile does not
    cancel it."""

    def __init__(self, media: aioredis.Redis) -> None:
        self.media = media
        self._under_way: dict[str, asyncio.Future[bytes | None]] = {}

    async def get(self, key: str) -> bytes | None:
        task = self._under_way.get(key)
        if task is None:
            task = self._under_way[key] = asyncio.ensure_future(self._get(key))
            task.add_done_callback(lambda _: self._under_way.pop(key, None))
        return await asyncio.shield(task)

    async def _get(self, key: str) -> bytes | None:
        raw = await self.media.get(key)
        return raw.encode() if isinstance(raw, str) else raw


class MediaFiles:
    def __init__(self, media: aioredis.Redis, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._gets = SharedGets(media)

    def get(self, key: str) -> bytes | None:
        """From the LRU only."""
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes or key in self._items:
            return
        self._items[key] = data
        self.bytes += len(data)
        while self.bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.bytes -= len(old)

    async def file(self, key: str) -> bytes | None:
        """From the LRU, else from Redis."""
        return self.get(key) or await self.fetch(key)

    async def fetch(self, key: str) -> bytes | None:
        """From the media Redis (one GET for the viewers asking at the same moment) into the LRU."""
        data = await self._gets.get(key)
        if data is not None:
            self.put(key, data)
        return data
