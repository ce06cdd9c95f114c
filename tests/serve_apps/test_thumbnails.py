"""Thumbnails made on request from a stored segment: an ffmpeg-made CMAF rendition in a real Redis."""

from __future__ import annotations

import asyncio
import io
import subprocess
from pathlib import Path

import av
import pytest
import redis.asyncio as aioredis

from raylive import store
from raylive.runtime.packaging.hls import newest_segment
from raylive.serve_apps.thumbnails import Thumbnails

pytestmark = pytest.mark.timeout(60)


def cmaf_rendition(out: Path) -> Path:
    """4 s of 640x360 H.264 cut by ffmpeg into 1 s fMP4 segments (an init segment and .m4s files)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "4",
         "-c:v", "libx264", "-g", "30", "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4",
         "-hls_fmp4_init_filename", "init.mp4", "-hls_list_size", "0", str(out / "index.m3u8")],
        check=True,
    )  # fmt: skip
    return out / "index.m3u8"


def test_newest_segment_is_the_last_complete_one() -> None:
    playlist = '#EXTM3U\n#EXT-X-MAP:URI="init-a.mp4"\n#EXTINF:2.0,\n1.m4s\n#EXTINF:2.0,\n2.m4s\n#EXT-X-PART:DURATION=0.2,URI="3.0.m4s"\n'
    assert newest_segment(playlist) == ("init-a.mp4", "2.m4s")
    assert newest_segment('#EXTM3U\n#EXT-X-MAP:URI="init-a.mp4"\n#EXT-X-PART:DURATION=0.2,URI="1.0.m4s"\n') is None


def test_a_live_stream_gets_one_jpeg_shared_by_every_request(tmp_path: Path, redis_url: str) -> None:
    playlist = cmaf_rendition(tmp_path)

    async def run() -> tuple[list[bytes | None], bytes | None, bytes | None]:
        media = aioredis.Redis.from_url(redis_url)
        thumbs = Thumbnails(media)
        missing = await thumbs.get("cam1")  # nothing published
        text = playlist.read_text()
        await media.set(store.file_key("cam1", "source/index.m3u8"), text)
        for f in tmp_path.iterdir():
            if f.suffix in (".mp4", ".m4s"):
                await media.set(store.file_key("cam1", f"source/{f.name}"), f.read_bytes())
        got = await asyncio.gather(*(thumbs.get("cam1") for _ in range(20)))
        shared = await media.get(store.file_key("cam1", "thumbnail.jpg"))
        ttl = await media.ttl(store.file_key("cam1", "thumbnail.jpg"))
        await media.aclose()
        assert 0 < ttl <= 5
        return got, missing, shared

    got, missing, shared = asyncio.run(run())
    assert missing is None
    assert len(set(got)) == 1 and got[0] == shared
    assert got[0] is not None and got[0][:2] == b"\xff\xd8"
    with av.open(io.BytesIO(got[0])) as jpeg:
        frame = next(jpeg.decode(video=0))
    assert (frame.width, frame.height) == (320, 180)
