"""Shared test helpers: the captured ffmpeg publish, a real ffmpeg publisher, polling with deadlines."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import httpx
import pytest

from raylive.runtime.flv import read_file_tags as flv_tags
from raylive.runtime.rtmp.chunk import ChunkReader, RtmpMessage
from raylive.runtime.rtmp.session import HANDSHAKE_SIZE

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def ffmpeg_publish_bytes() -> bytes:
    return (FIXTURES / "ffmpeg_publish.bin").read_bytes()


@cache
def ffmpeg_publish_messages(name: str = "ffmpeg_publish.bin") -> list[RtmpMessage]:
    """All messages of a capture, parsed after the handshake (C0 + C1 + C2)."""
    data = (FIXTURES / name).read_bytes()[1 + 2 * HANDSHAKE_SIZE :]
    return ChunkReader().feed(data)


def publish(url: str, seconds: float | None = 10, extra: tuple[str, ...] = (), size: str = "640x360") -> subprocess.Popen[bytes]:
    """The real ffmpeg CLI: a test pattern (640x360 by default) + sine, x264 ultrafast, 1 s GOP, in real time."""
    duration = ("-t", str(seconds)) if seconds else ()
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
         *duration, "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", "-b:a", "96k", *extra,
         "-f", "flv", url],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_for(
    check: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2, detail: Callable[[], object] = lambda: ""
) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what} {detail()}")
        time.sleep(interval_s)


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def playlist_ready(url: str) -> Callable[[], str | None]:
    def check() -> str | None:
        r = get(url)
        return r.text if r.status_code == 200 else None

    return check


def listen_port() -> int:
    """A free port for a server of ours (raylive's own choice: below the ephemeral range)."""
    from raylive.launcher.redis_server import free_port

    return free_port()


PYAV_VIDEO = {  # PyAV's FLV muxer (FFmpeg 8) writes these as Enhanced RTMP (FourCC hvc1, av01)
    "hevc": ("libx265", {"preset": "ultrafast", "x265-params": "keyint=30:min-keyint=30:scenecut=0:log-level=error"}),
    "av1": ("libsvtav1", {"preset": "12", "g": "30", "svtav1-params": "scd=0"}),
    "h264": ("libx264", {"preset": "ultrafast", "g": "30", "bf": "0"}),
}


def pyav_publish(target: str, codec: str, seconds: float, size: tuple[int, int] = (320, 180), realtime: bool = False) -> None:
    """A PyAV broadcaster: a moving pattern in `codec` at 30 fps, 1 s GOP, and AAC, written as FLV
    to `target` (a file, or an rtmp:// URL; `realtime` paces it like a camera)."""
    import av
    import numpy as np

    width, height = size
    name, options = PYAV_VIDEO[codec]
    t0 = time.monotonic()
    with av.open(target, "w", format="flv") as out:
        video = out.add_stream(name, rate=30, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000, layout="mono")
        samples = 0
        for i in range(int(seconds * 30)):
            img = np.zeros((height, width, 3), dtype=np.uint8)
            img[:, : (i * 7) % width] = (200, 80, 40)
            img[(i * 3) % height :, :, 2] = 180
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            while samples < (i + 1) * 48000 // 30:
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, samples
                out.mux(audio.encode(frame))
                samples += 1024
            if realtime and (ahead := t0 + (i + 1) / 30 - time.monotonic()) > 0:
                time.sleep(ahead)
        out.mux(video.encode())
        out.mux(audio.encode())


@cache
def pyav_flv(codec: str) -> list[tuple[int, int, bytes]]:
    """The tags of 3 s of `pyav_publish` at 320x180 written to an FLV file (made once per session)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{codec}.flv"
        pyav_publish(str(path), codec, seconds=3, size=(320, 180))
        return flv_tags(path.read_bytes())
