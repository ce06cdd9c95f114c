"""A playback replica's playlists for many viewers at once: one GET of the media Redis for the
viewers asking at the same moment, and none once an LL-HLS request has subscribed the replica to
the stream's playlist messages, whether or not that request had to be held."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from raylive import store
from raylive.serve_apps.blocking import PlaylistWatch

pytestmark = pytest.mark.timeout(60)
REL = "source/index.m3u8"


def _playlist(parts: int) -> bytes:
    """Segment 0 complete, then `parts` parts of segment 1."""
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-PART-INF:PART-TARGET=0.5", "#EXT-X-MEDIA-SEQUENCE:0"]
    lines += ['#EXT-X-PART:DURATION=0.5,URI="a-0.0.m4s"', "#EXTINF:2.0,", "a-0.m4s"]
    lines += [f'#EXT-X-PART:DURATION=0.5,URI="a-1.{i}.m4s"' for i in range(parts)]
    return ("\n".join(lines) + "\n").encode()


async def _gets(media: aioredis.Redis) -> int:
    return int((await media.info("commandstats")).get("cmdstat_get", {}).get("calls", 0))


async def _write(media: aioredis.Redis, name: str, text: bytes) -> None:
    """What a stream actor does with each media playlist it writes (actors/stream_output.py)."""
    await media.set(store.file_key(name, REL), text)
    await media.publish(store.playlists_channel(name), REL.encode() + b"\n" + text)


def test_viewers_asking_for_a_playlist_at_once_share_one_get(redis_url: str) -> None:
    async def scenario() -> tuple[int, set[bytes | None]]:
        media = aioredis.Redis.from_url(redis_url)
        await media.set(store.file_key("cam1", REL), _playlist(1))
        watch = PlaylistWatch(media)
        before = await _gets(media)
        texts = await asyncio.gather(*(watch.playlist("cam1", REL) for _ in range(100)))
        return await _gets(media) - before, set(texts)

    gets, texts = asyncio.run(scenario())
    assert texts == {_playlist(1)}
    assert gets == 1


def test_an_ll_hls_request_answered_at_once_still_subscribes(redis_url: str) -> None:
    """CI saw 300 GETs for 300 LL-HLS requests: the request meant to subscribe the replica asked
    for a part that had just been written, was answered without waiting, and so never subscribed."""

    async def scenario() -> None:
        media = aioredis.Redis.from_url(redis_url)
        await _write(media, "cam1", _playlist(2))
        watch = PlaylistWatch(media)
        # A request for a part that exists (what `_HLS_msn`/`_HLS_part` in the past asks).
        assert await watch.playlist("cam1", REL, subscribe=True) == _playlist(2)
        await _write(media, "cam1", _playlist(3))  # the next part, as a message too
        before = await _gets(media)
        held = asyncio.gather(*(watch.wait("cam1", REL, 1, 3, 5.0) for _ in range(100)))
        await asyncio.sleep(0.2)
        await _write(media, "cam1", _playlist(4))
        assert set(await held) == {_playlist(4)}
        texts = await asyncio.gather(*(watch.playlist("cam1", REL, subscribe=True) for _ in range(100)))
        assert set(texts) == {_playlist(4)}
        assert await _gets(media) - before == 0
        # A stream that does not exist: no subscription left behind, whatever the names asked for.
        assert await watch.playlist("ghost", REL, subscribe=True) is None
        assert await media.pubsub_numsub(store.playlists_channel("ghost")) == [(store.playlists_channel("ghost").encode(), 0)]

    asyncio.run(scenario())
