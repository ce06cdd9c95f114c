"""One rendition of a live presentation as its owner keeps it: its init segment, media playlist
and what it has produced (for BANDWIDTH, FRAME-RATE and the DASH Representation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cmaf import VIDEO_TIMESCALE, InitSegment
from .hls import MediaPlaylist, PlaylistSegment


@dataclass
class Rendition:
    name: str  # directory under the stream root
    init: InitSegment
    init_uri: str
    playlist: MediaPlaylist
    epoch: str = ""  # period of the latest segment; a segment of another one follows a discontinuity
    dropped: bool = False  # a ladder rung given up (transcoder too slow): ended, no longer advertised
    view: bool = False  # a processor's output: its own multivariant playlist (`NAME.m3u8`), not an ABR rung
    peak_bps: int = 0
    total_bits: int = 0
    total_s: float = 0.0
    frames: int = 0
    segments_out: int = 0
    parts_out: int = 0
    paths: dict[str, float] = field(default_factory=dict)  # segment path -> seconds
    part_bits: int = 0  # parts: what there is to go by before the first segment is complete
    part_s: float = 0.0
    part_frames: int = 0

    @property
    def average_bps(self) -> int:
        return int(self.total_bits / self.total_s) if self.total_s else self.bandwidth

    @property
    def bandwidth(self) -> int:
        """Peak bits/s of its segments; before the first is complete, that of its parts so far
        (the multivariant playlist and the MPD are out at the first part)."""
        if self.peak_bps or not self.part_s:
            return self.peak_bps
        return int(self.part_bits / self.part_s)

    @property
    def frame_rate(self) -> float:
        frames, seconds = (self.frames, self.total_s) if self.total_s else (self.part_frames, self.part_s)
        return nominal_frame_rate(frames / seconds) if seconds else 0.0

    @property
    def timescale(self) -> int:
        return self.init.sample_rate if self.init.sample_rate else VIDEO_TIMESCALE

    def snapshot(self) -> dict[str, Any]:
        """What a restarted owner needs to continue its playlist (JSON-able; no media)."""
        pl = self.playlist
        return {
            "name": self.name,
            "init": {"codec": self.init.codec, "width": self.init.width, "height": self.init.height,
                     "sample_rate": self.init.sample_rate, "channels": self.init.channels},
            "init_uri": self.init_uri, "epoch": self.epoch, "dropped": self.dropped, "view": self.view, "peak_bps": self.peak_bps,
            "total_bits": self.total_bits, "total_s": self.total_s, "frames": self.frames, "segments_out": self.segments_out,
            "paths": self.paths, "media_sequence": pl.media_sequence, "discontinuity_sequence": pl.discontinuity_sequence,
            "target_duration": pl.target_duration,
            "segments": [
                [g.uri, g.duration_s, g.program_date_time, g.init_uri, g.discontinuity, g.start, g.duration] for g in pl.segments
            ],
        }  # fmt: skip

    @classmethod
    def restore(cls, key: str, d: dict[str, Any], window: int, part_target: float) -> Rendition:
        pl = MediaPlaylist(
            d["window"] if "window" in d else window, d["media_sequence"], d["discontinuity_sequence"], d["target_duration"],
            part_target=part_target,
        )  # fmt: skip
        for uri, duration_s, pdt, init_uri, discontinuity, *ticks in d["segments"]:
            start, duration = ticks or (0, 0)
            pl.segments.append(PlaylistSegment(uri, duration_s, pdt, init_uri, discontinuity, start=start, duration=duration))
        r = cls(d["name"], InitSegment(key, b"", **d["init"]), d["init_uri"], pl, d["epoch"], d["dropped"])
        r.peak_bps, r.total_bits, r.total_s = d["peak_bps"], d["total_bits"], d["total_s"]
        r.frames, r.segments_out, r.paths, r.view = d["frames"], d["segments_out"], dict(d["paths"]), d.get("view", False)
        return r


COMMON_RATES = (10.0, 12.0, 12.5, 15.0, 20.0, 23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 120.0)


def nominal_frame_rate(measured: float) -> float:
    """Millisecond timestamps blur the rate (30 fps arrives as 33/33/34 ms); snap to the usual ones."""
    best = min(COMMON_RATES, key=lambda r: abs(r - measured))
    return best if abs(best - measured) <= 0.01 * best else round(measured, 3)
