"""What a stream's ABR ladder is, without encoding anything: the rungs planned for a source, the
items the stream actor feeds its transcoder (`LadderPeriod`, `LadderConfig`, `LadderFrame`) and
what comes back. Kept apart from `transcode.py` so the stream actor, which only packages
compressed media, never imports PyAV (≈ 17 MB and 0.1 CPU-s in every stream worker)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .media import VideoConfig
from .packaging.cmaf import PackagerOutput

ENCODERS = {"x264": "libx264", "nvenc": "h264_nvenc"}
# HEVC and AV1 need about half H.264's bitrate for the same quality.
H264_BITS_PER_NEWER_CODEC_BIT = 2
# Cores per 10^9 output pixels/s for x264 veryfast incl. scaling, from benchmarks/transcode.py.
CPU_PER_GPIXEL = 8.5


@dataclass(frozen=True, slots=True)
class PlannedRung:
    name: str
    width: int
    height: int
    video_kbps: int

    @property
    def pixel_rate_weight(self) -> int:
        return self.width * self.height


def plan_ladder(
    ladder: list[str],
    renditions: dict[str, dict[str, int]],
    src_width: int,
    src_height: int,
    src_kbps: float | None = None,
    src_codec: str = "avc1",
) -> list[PlannedRung]:
    """The rungs to encode for a source: never upscale, never above the source's bitrate, and no
    re-encode at the source's own height while the source itself is served. An HEVC or AV1 source
    gets its H.264 rung at its own height too (not every player decodes it), and counts as twice
    its bitrate (what H.264 needs for the same picture)."""
    passthrough = "source" in ladder and src_codec == "avc1"
    h264_kbps = src_kbps * (1 if src_codec == "avc1" else H264_BITS_PER_NEWER_CODEC_BIT) if src_kbps else None
    rungs: list[PlannedRung] = []
    for name in ladder:
        if name == "source":
            continue
        spec = renditions[name]
        height = spec["height"]
        if height > src_height or (passthrough and height == src_height):
            continue
        if h264_kbps and spec["video_kbps"] > h264_kbps:
            continue
        width = max(2, round(src_width * height / src_height / 2) * 2)  # keep the aspect, even sizes
        rungs.append(PlannedRung(name, width, height - height % 2, spec["video_kbps"]))
    return sorted(rungs, key=lambda r: -r.height)


@dataclass(slots=True)
class LadderPeriod:
    """A new period starts (first publish, reconnect, codec change): segments get this epoch."""

    epoch: str


@dataclass(slots=True)
class LadderConfig:
    video: VideoConfig
    frame_rate: float = 30.0
    source_kbps: float | None = None
    parts: bool = False  # the source is cut into parts (LL-HLS): rungs cut theirs at the same frames


@dataclass(slots=True)
class LadderFrame:
    dts_ms: int
    cts_ms: int
    keyframe: bool
    data: bytes  # an MP4 sample of the source's codec, as ingest made it
    starts_segment: bool  # the source's packager starts a segment at this frame
    starts_part: bool = False  # ... or a part (LL-HLS; every segment start is one too)
    segment: int = 0  # the index of the source's segment this frame is in (within its period)


LadderInput = LadderPeriod | LadderConfig | LadderFrame


@dataclass(frozen=True, slots=True)
class RungOutput:
    epoch: str
    output: PackagerOutput


def estimate_cpus(
    rungs: list[PlannedRung], src_width: int, src_height: int, frame_rate: float, cpu_per_gpixel: float = CPU_PER_GPIXEL
) -> float:
    """CPU cores a ladder needs in real time: decode plus scale+encode, proportional to pixel rate.

    `cpu_per_gpixel` (cores per 10^9 pixels/s) comes from benchmarks/transcode.py on this kind of
    machine; Ray uses the figure to place stream transcoders across nodes.
    """
    pixels = src_width * src_height * 0.3 + sum(r.width * r.height for r in rungs)  # decoding ≈ 0.3 of an encode
    return math.ceil(pixels * frame_rate / 1e9 * cpu_per_gpixel * 100) / 100


def frame_rate_of(metadata: dict[str, Any]) -> float:
    fps = metadata.get("framerate") or metadata.get("videoframerate")
    return float(fps) if isinstance(fps, (int, float)) and 1 <= fps <= 240 else 30.0


def source_kbps_of(metadata: dict[str, Any]) -> float | None:
    kbps = metadata.get("videodatarate")
    return float(kbps) if isinstance(kbps, (int, float)) and kbps > 0 else None
