"""What the packager, the ladder and the status need to know of a video configuration, whatever
its codec: dimensions, the RFC 6381 codec string, the FFmpeg decoder."""

from __future__ import annotations

from dataclasses import dataclass

from .av1 import Av1Error, describe_av1c
from .avc import AvcError, sps_from_avcc
from .hevc import HevcError, describe_hvcc
from .media import VideoConfig

CODEC_NAMES = {"avc1": "H.264", "hvc1": "HEVC", "av01": "AV1"}
# libdav1d: FFmpeg's own `av1` decoder needs a hardware accelerator.
DECODERS = {"avc1": "h264", "hvc1": "hevc", "av01": "libdav1d"}


class VideoConfigError(ValueError):
    """A decoder configuration record that does not parse."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str  # MP4 FourCC
    codec_string: str
    width: int
    height: int

    @property
    def name(self) -> str:
        return CODEC_NAMES[self.codec]


def describe(config: VideoConfig) -> VideoInfo:
    try:
        if config.codec == "avc1":
            sps = sps_from_avcc(config.record)
            return VideoInfo("avc1", sps.codec_string, sps.width, sps.height)
        if config.codec == "hvc1":
            return VideoInfo("hvc1", *describe_hvcc(config.record))
        if config.codec == "av01":
            return VideoInfo("av01", *describe_av1c(config.record))
    except (AvcError, HevcError, Av1Error) as exc:
        raise VideoConfigError(f"bad {CODEC_NAMES[config.codec]} configuration: {exc}") from None
    raise VideoConfigError(f"no packaging for {config.codec}")
