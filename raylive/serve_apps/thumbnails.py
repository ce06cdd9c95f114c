"""Live thumbnails, made when asked: the first frame of the stream's newest source segment as a
JPEG, shared through the media Redis for `THUMBNAIL_TTL_S`. Stream actors used to decode a
keyframe every 5 s whether anyone looked or not, which kept PyAV (≈ 17 MB USS, 0.1 CPU-s to
import) in every stream worker; here one decode serves every viewer of a stream for 5 s."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import store
from ..runtime.packaging.hls import newest_segment

log = logging.getLogger(__name__)
THUMBNAIL_TTL_S = 5
PLAYLIST = "source/index.m3u8"  # the source is packaged whether or not it is advertised


class Thumbnails:
    def __init__(self, media: Any) -> None:
        self.media = media  # redis.asyncio client of the media Redis
        self._making: dict[str, asyncio.Future[bytes | None]] = {}

    async def get(self, name: str) -> bytes | None:
        """The stream's thumbnail, or None when it has no segment (not live) or it did not decode."""
        key = store.file_key(name, "thumbnail.jpg")
        data: bytes | None = await self.media.get(key)
        if data is not None:
            return data
        if name not in self._making:  # one decode per replica, whatever the number of requests
            self._making[name] = asyncio.ensure_future(self._make(name, key))
            self._making[name].add_done_callback(lambda _: self._making.pop(name, None))
        return await asyncio.shield(self._making[name])

    async def _make(self, name: str, key: str) -> bytes | None:
        from ..runtime.frames import segment_jpeg  # PyAV, here only

        playlist = await self.media.get(store.file_key(name, PLAYLIST))
        found = newest_segment(store.text(playlist)) if playlist else None
        if found is None:
            return None
        init, segment = await self.media.mget([store.file_key(name, f"source/{uri}") for uri in found])
        if init is None or segment is None:
            return None  # expired between the two reads
        try:
            jpeg = await asyncio.to_thread(segment_jpeg, init, segment)
        except ValueError as exc:
            log.info("stream %s: no thumbnail: %s", name, exc)
            return None
        await self.media.set(key, jpeg, ex=THUMBNAIL_TTL_S)
        return jpeg
