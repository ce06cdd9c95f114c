"""Shared test helpers: the captured ffmpeg publish, split into handshake and messages."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from raylive.runtime.rtmp.chunk import ChunkReader, RtmpMessage
from raylive.runtime.rtmp.session import HANDSHAKE_SIZE

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def ffmpeg_publish_bytes() -> bytes:
    return (FIXTURES / "ffmpeg_publish.bin").read_bytes()


@cache
def ffmpeg_publish_messages() -> list[RtmpMessage]:
    """All messages of the capture, parsed after the handshake (C0 + C1 + C2)."""
    data = ffmpeg_publish_bytes()[1 + 2 * HANDSHAKE_SIZE :]
    return ChunkReader().feed(data)
