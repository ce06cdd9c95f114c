"""A processor's output frames as one more rendition of its stream. Pure computation, no Ray.

`ProcessedVideo` is told of every decoded source frame (`expect`) and of what the processor made
of some of them (`result`). It emits exactly one output frame per source frame, in order, at the
source frame's timestamp, so the rendition keeps the source's pace and timing (audio stays in
sync) and its segments and parts start where the source's do (a keyframe forced there, segment
numbers the source's). A frame the processor skipped, dropped, failed on or has not answered within
`max_delay_s` gets the processor's latest output again (counted as repeated); before its first
output, the source frame itself. A processor that falls behind therefore drops frames, never
timestamps, and a late answer still becomes the frame repeated next.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from av.video.frame import VideoFrame

from .frames import FrameSampler
from .ladder import ENCODERS, LadderConfig, LadderFrame, LadderInput, LadderPeriod, PlannedRung, RungOutput
from .packaging.cmaf import PackagerOutput
from .transcode import RungEncoder, open_encoder

DELAYS_KEPT = 1000  # the newest frames' delays, for the median and p95 in stats
BITS_PER_PIXEL = 0.07  # H.264 at veryfast: ≈ 1.9 Mb/s for 720p30 when no bitrate is given


def output_image(value: Any) -> VideoFrame | np.ndarray | None:
    """What a processor returned, if it is a frame: an HxWx3 uint8 RGB array or an `av.VideoFrame`."""
    if isinstance(value, VideoFrame):
        return value
    if isinstance(value, np.ndarray):
        if value.ndim != 3 or value.shape[2] != 3 or value.dtype != np.uint8 or min(value.shape[:2]) < 2:
            raise ValueError(f"a frame must be an HxWx3 uint8 RGB array, not {value.dtype} {value.shape}")
        return value
    return None


@dataclass
class _Slot:
    pts_ms: int
    arrived: float  # when the source frame reached the processor's host (monotonic seconds)
    source: np.ndarray | None  # the frame as the processor sees it, until the first output exists
    segment: int  # the source's segment index (within the period)
    pending: bool  # handed to the processor and not answered yet


class ProcessedVideo:
    def __init__(
        self,
        name: str,
        video_kbps: int = 0,
        max_delay_s: float = 0.5,
        fps: float = 0.0,
        height: int | None = None,
        gpu: bool = False,
    ) -> None:
        self.name = name
        self.sampler = FrameSampler(0, height, gpu)  # every frame decoded: each gets an output frame
        self.interval_ms = 1000 / fps if fps else 0.0  # what the processor is given (0: every frame)
        self._next_ms = -math.inf
        self._cuts: dict[int, LadderFrame] = {}  # pts -> its source frame (where segments and parts start)
        self.video_kbps = video_kbps
        self.max_delay_s = max_delay_s
        self.preset = "veryfast"
        self.epoch = ""
        self.frame_rate = 30.0
        self.parts = False
        self.rung: RungEncoder | None = None  # opened at the period's first output frame (its size)
        self.slots: deque[_Slot] = deque()
        self._marks: list[tuple[int, bool, bool]] = []  # cuts seen before the encoder is opened
        self.by_pts: dict[int, _Slot] = {}
        self.results: dict[int, VideoFrame | np.ndarray] = {}
        self.latest: VideoFrame | np.ndarray | None = None
        self.processed = self.repeated = self.passed_through = 0
        self.delays: deque[float] = deque(maxlen=DELAYS_KEPT)
        self.new_delays: list[float] = []  # since the owner last took them (for its metrics)

    def push(self, items: list[LadderInput], now: float) -> tuple[list[RungOutput], list[tuple[float, np.ndarray]]]:
        """The tap's items: every frame decoded is expected. Returns what a period's end made and
        the frames (media time s, RGB) to hand the processor, at most `fps` a second."""
        out: list[RungOutput] = []
        given: list[tuple[float, np.ndarray]] = []
        for item in items:
            if isinstance(item, LadderPeriod):
                out += self.start_period(item.epoch)
            elif isinstance(item, LadderConfig):
                self.frame_rate, self.parts = item.frame_rate, item.parts
            else:
                self._cuts[item.dts_ms + item.cts_ms] = item
            for ts, rgb in self.sampler.push([item]):
                pts = round(ts * 1000)
                src = self._cuts.pop(pts, None)
                take = pts >= self._next_ms
                if take:
                    self._next_ms = pts + self.interval_ms - 2  # millisecond timestamps jitter by a ms or two
                    given.append((ts, rgb))
                segment = src.segment if src else self.slots[-1].segment if self.slots else 0
                self.expect(pts, rgb, bool(src and src.starts_segment), bool(src and src.starts_part), segment, take, now)
        return out, given

    def start_period(self, epoch: str, frame_rate: float = 30.0, parts: bool = False) -> list[RungOutput]:
        """A new period (the source's timestamps restart): what is open ends first."""
        out = self.finish()
        self.epoch, self.frame_rate, self.parts = epoch, frame_rate, parts
        self._cuts.clear()
        self._next_ms = -math.inf
        return out

    def expect(
        self, pts_ms: int, source: np.ndarray, starts_segment: bool, starts_part: bool, segment: int, pending: bool, now: float
    ) -> None:
        """A decoded source frame; `pending`: it was handed to the processor."""
        slot = _Slot(pts_ms, now, source if self.latest is None else None, segment, pending)
        self.slots.append(slot)
        self.by_pts[pts_ms] = slot
        if self.rung is not None:
            self.rung.mark(pts_ms, starts_segment, starts_part)
        else:
            self._marks.append((pts_ms, starts_segment, starts_part))

    def overdue(self, pts_ms: int, now: float) -> bool:
        """Whether the frame at `pts_ms` has been (or is about to be) emitted without the
        processor's answer: not worth processing any more."""
        slot = self.by_pts.get(pts_ms)
        return slot is None or now - slot.arrived >= self.max_delay_s

    def skipped(self, pts_ms: int) -> None:
        """The processor will not answer for this frame (dropped from its queue, or it failed)."""
        slot = self.by_pts.get(pts_ms)
        if slot is not None:
            slot.pending = False

    def result(self, pts_ms: int, image: VideoFrame | np.ndarray) -> None:
        slot = self.by_pts.get(pts_ms)
        if slot is not None:
            slot.pending = False
            self.results[pts_ms] = image
        else:  # too late for its own frame (repeated meanwhile): the next repeats show it
            self.latest = image

    def flush(self, now: float, final: bool = False) -> list[RungOutput]:
        """Output frames for every source frame answered or overdue, in order."""
        out: list[RungOutput] = []
        while self.slots:
            slot = self.slots[0]
            image = self.results.pop(slot.pts_ms, None)
            if image is None:
                if slot.pending and not final and now - slot.arrived < self.max_delay_s:
                    break
                if self.latest is not None:
                    image, self.repeated = self.latest, self.repeated + 1
                else:
                    assert slot.source is not None
                    image, self.passed_through = slot.source, self.passed_through + 1
            else:
                self.latest, self.processed = image, self.processed + 1
            self.slots.popleft()
            del self.by_pts[slot.pts_ms]
            out += self._emit(slot, image)
            self.delays.append(now - slot.arrived)
            self.new_delays.append(now - slot.arrived)
        return out

    def finish(self) -> list[RungOutput]:
        """End of the period: every frame left is emitted, the encoder drained, the segment closed."""
        out = self.flush(math.inf, final=True)
        if self.rung is not None:
            out += self._outputs(self.rung.finish())
        self.rung = None
        self._marks = []
        return out

    def stats(self) -> dict[str, Any]:
        delays = sorted(self.delays)
        return {
            "output_frames": self.processed + self.repeated + self.passed_through,
            "repeated": self.repeated + self.passed_through,
            "delay_ms_p50": round(statistics.median(delays) * 1000, 1) if delays else None,
            "delay_ms_p95": round(delays[int(0.95 * (len(delays) - 1))] * 1000, 1) if delays else None,
        }

    def _emit(self, slot: _Slot, image: VideoFrame | np.ndarray) -> list[RungOutput]:
        frame = image if isinstance(image, VideoFrame) else VideoFrame.from_ndarray(image, format="rgb24")
        if self.rung is None:
            self.rung = self._open(frame.width, frame.height, slot.segment)
        frame.pts = slot.pts_ms
        return self._outputs(self.rung.encode(frame))

    def _open(self, width: int, height: int, first_segment: int) -> RungEncoder:
        width, height = width - width % 2, height - height % 2
        kbps = self.video_kbps or max(200, round(width * height * self.frame_rate * BITS_PER_PIXEL / 1000))
        plan = PlannedRung(self.name, width, height, kbps)
        rung = RungEncoder(
            plan, open_encoder(ENCODERS["x264"], plan, self.frame_rate, self.preset, zerolatency=True), self.parts, first_segment
        )
        for mark in self._marks:
            rung.mark(*mark)
        self._marks = []
        return rung

    def _outputs(self, outputs: list[PackagerOutput]) -> list[RungOutput]:
        return [RungOutput(self.epoch, o) for o in outputs]
