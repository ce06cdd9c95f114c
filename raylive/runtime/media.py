"""Media facts that the packager, the playback app and the key store must agree on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A stream name: what /live/NAME/ and the RTMP stream key's owner are called.
STREAM_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"


def mp4_type(rendition: str) -> str:
    """The content type of a rendition's init and media segments."""
    return "audio/mp4" if rendition == "audio" else "video/mp4"


# The typed media stream that ingest produces and the packager, transcoder and taps consume.
@dataclass(frozen=True, slots=True)
class VideoConfig:
    record: bytes  # the decoder configuration record: the avcC, hvcC or av1C box body
    codec: str = "avc1"  # its MP4 FourCC: avc1 (H.264), hvc1 (HEVC), av01 (AV1)


@dataclass(slots=True)
class VideoFrame:
    dts_ms: int
    cts_ms: int
    keyframe: bool
    data: bytes


@dataclass(slots=True)
class AudioConfig:
    audio_specific_config: bytes


@dataclass(slots=True)
class AudioFrame:
    dts_ms: int
    data: bytes


@dataclass(slots=True)
class Metadata:
    values: dict[str, Any]


MediaEvent = VideoConfig | VideoFrame | AudioConfig | AudioFrame | Metadata
