"""CMAF segmenter: timed access units in, init segments, parts and keyframe-aligned segments out.

Each track becomes its own rendition ("video", "audio"). The video track leads (`CutClock`): a
segment is cut at the first keyframe at least `target_duration_ms` after the segment start, and,
for low-latency HLS and DASH, a part (one `moof`+`mdat`, a CMAF chunk) whenever the next frame
would not fit in the part duration. The audio track is cut at the same instants, so every
rendition shares segment boundaries, numbers and part boundaries (audio to within one AAC frame).
A segment is the concatenation of its parts. Without video, audio cuts on its own clock.
Pure computation: callers feed frames and get `PackagerOutput` values back (Membrane-style),
which makes it testable without a runtime.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field

from ..aac import SAMPLES_PER_FRAME, AacInfo, parse_audio_specific_config
from ..media import VideoConfig
from ..video import VideoInfo, describe
from .fmp4 import AudioTrack, Sample, Track, VideoTrack, fragment, init_segment

log = logging.getLogger(__name__)

VIDEO_TIMESCALE = 90000
# Safety valve: if the video track stalls, audio still cuts rather than buffering forever.
MAX_SEGMENT_FACTOR = 5
# What a part of the lead track may be longer than its nominal duration: millisecond timestamps
# (30 fps arrives as 33/33/34 ms), so a frame that ends 1 ms late still fits.
PART_JITTER_MS = 1


class Cut(enum.IntEnum):
    """What a frame starts."""

    NONE = 0
    PART = 1
    SEGMENT = 2


class CutClock:
    """Where the lead track is cut. `starts(dts_ms, keyframe, cts_ms)` for each frame about to be
    added says whether it starts a segment (a keyframe presented `segment_ms` or more after the
    segment's first keyframe: with B-frames, x265 puts keyframes 967 ms apart in decode time and
    1,000 in presentation time; also the first frame) or a part (the part would not hold it: its duration would exceed the
    nominal part duration). The nominal part is a whole number of frames, the nearest to `part_ms`,
    measured from the frames seen before the first part is cut (so 24 fps gets 208 ms parts, not a
    167 ms one below the 85 % the HLS spec asks of parts), and at most `max_part_ms`. The gateway runs
    the same clock on the same timestamps to deliver each part's last frame without waiting."""

    def __init__(self, segment_ms: int, part_ms: int = 0, max_part_ms: float = 0.0) -> None:
        self.segment_ms = segment_ms
        self.part_ms = part_ms
        self.max_part_ms = max_part_ms
        self.nominal_part_ms = 0.0  # fixed at the first part cut
        self._seg_pts: int | None = None  # presentation time of the segment's first frame
        self._part_start = 0
        self._last: int | None = None
        self._first = 0
        self._frames = 0

    def starts(self, dts_ms: int, keyframe: bool, cts_ms: int = 0) -> Cut:
        last, self._last = self._last, dts_ms
        self._frames += 1
        if self._seg_pts is None:
            self._part_start = self._first = dts_ms
            self._seg_pts = dts_ms + cts_ms
            return Cut.SEGMENT
        if keyframe and dts_ms + cts_ms - self._seg_pts >= self.segment_ms:
            self._part_start, self._seg_pts = dts_ms, dts_ms + cts_ms
            return Cut.SEGMENT
        if not self.part_ms or last is None:
            return Cut.NONE
        frame_ms = max(1, dts_ms - last)  # this frame will last about as long as the one before
        if not self.nominal_part_ms:
            per_frame = (dts_ms - self._first) / (self._frames - 1)
            nominal = max(1, round(self.part_ms / per_frame)) * per_frame if per_frame > 0 else float(self.part_ms)
            if dts_ms - self._part_start + frame_ms <= nominal + PART_JITTER_MS:
                return Cut.NONE  # not measured yet: the first part is still filling
            self.nominal_part_ms = min(nominal, self.max_part_ms) if self.max_part_ms else nominal
        if dts_ms - self._part_start + frame_ms > self.nominal_part_ms + PART_JITTER_MS:
            self._part_start = dts_ms
            return Cut.PART
        return Cut.NONE


@dataclass(slots=True)
class InitSegment:
    rendition: str
    data: bytes
    codec: str
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0


@dataclass(slots=True)
class MediaPart:
    """A part of the open segment (LL-HLS `EXT-X-PART`, a DASH chunk): one moof+mdat."""

    rendition: str
    segment_index: int
    index: int  # within its segment, from 0
    start_s: float  # media time of the first sample
    duration_s: float
    data: bytes
    independent: bool  # starts with a sync sample
    frames: int
    start: int = 0  # earliest presentation time of its first sample, in the track's timescale


@dataclass(slots=True)
class MediaSegment:
    rendition: str
    index: int  # per rendition, starts at 0, +1 per segment
    start_s: float  # media time of the first sample
    duration_s: float
    data: bytes  # its parts, in order (one fragment when there are no parts)
    frames: int
    start: int = 0  # earliest presentation time, in the track's timescale (DASH SegmentTimeline)
    duration: int = 0
    timescale: int = 1


PackagerOutput = InitSegment | MediaPart | MediaSegment


@dataclass
class _TrackState:
    rendition: str
    track: Track
    emit_parts: bool
    part: list[Sample] = field(default_factory=list)  # the open part's complete samples
    held: Sample | None = None  # video: the last sample, whose duration is known when the next arrives
    parts: list[bytes] = field(default_factory=list)  # the open segment's closed parts
    seg_start: int | None = None  # dts (track units) of the open segment's first sample
    seg_cts: int = 0  # and its composition offset
    seg_frames: int = 0
    next_index: int = 0
    sequence: int = 0  # fragments written (moof sequence numbers)
    cuts: deque[tuple[int, Cut]] = field(default_factory=deque)  # audio: video cut instants not yet applied
    last_duration: int = 0
    end: int = 0  # dts + duration of the latest complete sample

    @property
    def timescale(self) -> int:
        return self.track.timescale

    @property
    def open(self) -> bool:
        return self.held is not None or bool(self.part) or bool(self.parts)

    def add(self, sample: Sample, known_duration: bool = False) -> None:
        if self.held is not None:
            self._complete_held(sample.dts)
        if self.seg_start is None:
            self.seg_start, self.seg_cts = sample.dts, sample.cts_offset
        if known_duration:
            self.part.append(sample)
            self.end = sample.dts + sample.duration
        else:
            self.held = sample

    def _complete_held(self, next_dts: int) -> None:
        assert self.held is not None
        self.held.duration = max(1, next_dts - self.held.dts)
        self.last_duration = self.held.duration
        self.part.append(self.held)
        self.end = next_dts
        self.held = None

    def close_part(self, at: int | None) -> list[PackagerOutput]:
        """Close the open part where the next sample starts (`at`; None: the end of the stream)."""
        if self.held is not None:
            self._complete_held(at if at is not None else self.held.dts + (self.last_duration or 1))
        if not self.part:
            return []
        self.sequence += 1
        data = fragment(self.track, self.sequence, self.part)
        first, n = self.part[0], len(self.part)
        duration = sum(s.duration for s in self.part)
        self.parts.append(data)
        self.seg_frames += n
        self.part = []
        if not self.emit_parts:
            return []
        ts = self.timescale
        start = first.dts + first.cts_offset
        return [
            MediaPart(self.rendition, self.next_index, len(self.parts) - 1, first.dts / ts, duration / ts, data, first.keyframe, n, start)
        ]

    def close_segment(self, at: int | None) -> list[PackagerOutput]:
        out = self.close_part(at)
        if self.parts:
            assert self.seg_start is not None
            ts = self.timescale
            duration = self.end - self.seg_start
            seg = MediaSegment(
                self.rendition, self.next_index, self.seg_start / ts, duration / ts, b"".join(self.parts), self.seg_frames,
                self.seg_start + self.seg_cts, duration, ts,
            )  # fmt: skip
            out.append(seg)
            self.next_index += 1
        self.parts, self.seg_frames, self.seg_start = [], 0, None
        return out

    def close(self, kind: Cut, at: int | None) -> list[PackagerOutput]:
        return self.close_segment(at) if kind == Cut.SEGMENT else self.close_part(at)


class CmafPackager:
    """`target_duration_ms`: segments (0: a segment at every keyframe); `part_ms`: the nominal part
    duration for LL-HLS (0: no parts); `max_part_ms`: what a part may last at most (the stream's
    PART-TARGET less an audio frame, once fixed: a reconnecting publisher keeps it).
    A ladder rung's packager is told where to cut (`video_frame(..., cut=)`): where the source did."""

    def __init__(
        self,
        target_duration_ms: int = 2000,
        video_rendition: str = "video",
        part_ms: int = 0,
        max_part_ms: float = 0.0,
        parts: bool = False,
        first_segment: int = 0,
    ) -> None:
        self.target_duration_ms = target_duration_ms
        self.first_segment = first_segment  # a rung that starts mid-period numbers its segments as the source does
        self.part_ms = part_ms
        self.video_rendition = video_rendition
        self.emit_parts = parts or part_ms > 0
        self.clock = CutClock(target_duration_ms, part_ms, max_part_ms)
        self.audio_clock = CutClock(target_duration_ms, part_ms, max_part_ms)  # audio-only streams
        # Video segments and parts begun so far; a change across a `video_frame` call means that
        # frame starts one (what the ladder transcoder aligns its keyframes and parts to).
        self.segments_started = 0
        self.parts_started = 0
        self.video: _TrackState | None = None
        self.audio: _TrackState | None = None
        self.video_info: VideoInfo | None = None
        self.aac: AacInfo | None = None
        self._seen_keyframe = False

    @property
    def video_source(self) -> VideoConfig | None:
        """The video configuration being packaged."""
        track = self.video.track if self.video is not None else None
        return VideoConfig(track.record, track.codec) if isinstance(track, VideoTrack) else None

    @property
    def audio_asc(self) -> bytes | None:
        return self.audio.track.audio_specific_config if self.audio is not None else None  # type: ignore[union-attr]

    @property
    def nominal_part_s(self) -> float:
        """The lead track's part duration, once the first part has been cut (else 0)."""
        clock = self.clock if self.video is not None else self.audio_clock
        return clock.nominal_part_ms / 1000

    # -- configuration ------------------------------------------------------------------
    def video_config(self, config: VideoConfig) -> list[PackagerOutput]:
        info = describe(config)
        if self.video is not None:
            if self.video_source == config:
                return []
            # A changed config (resolution switch) needs a discontinuity; handled by the caller.
            raise ValueError("video configuration changed mid-stream")
        self.video_info = info
        track = VideoTrack(config.record, info.width, info.height, VIDEO_TIMESCALE, codec=config.codec)
        self.video = _TrackState(self.video_rendition, track, self.emit_parts, next_index=self.first_segment)
        return [InitSegment(self.video_rendition, init_segment(track), info.codec_string, width=info.width, height=info.height)]

    def audio_config(self, asc: bytes) -> list[PackagerOutput]:
        info = parse_audio_specific_config(asc)
        if self.audio is not None:
            if self.audio.track.audio_specific_config == asc:  # type: ignore[union-attr]
                return []
            raise ValueError("audio configuration changed mid-stream")
        self.aac = info
        track = AudioTrack(asc, info.sample_rate, info.channels)
        self.audio = _TrackState("audio", track, self.emit_parts)
        return [InitSegment("audio", init_segment(track), info.codec_string, sample_rate=info.sample_rate, channels=info.channels)]

    # -- media ----------------------------------------------------------------------------
    def video_frame(self, dts_ms: int, cts_ms: int, keyframe: bool, data: bytes, cut: Cut | None = None) -> list[PackagerOutput]:
        v = self.video
        if v is None:
            return []
        if not self._seen_keyframe:
            if not keyframe:
                return []  # undecodable without the preceding keyframe
            self._seen_keyframe = True
        if cut is None:
            cut = self.clock.starts(dts_ms, keyframe, cts_ms)
        elif not v.open:
            cut = Cut.SEGMENT  # the first frame a rung encodes starts its first segment
        dts = dts_ms * VIDEO_TIMESCALE // 1000
        if v.held is not None and dts <= v.held.dts:
            dts = v.held.dts + 1
        out: list[PackagerOutput] = []
        if cut != Cut.NONE:
            if v.open:
                out += v.close(cut, dts)
                if self.audio is not None:
                    out += self._cut_audio(dts_ms, cut)
            if cut == Cut.SEGMENT:
                self.segments_started += 1
            self.parts_started += 1
        v.add(Sample(dts, 0, max(0, cts_ms) * VIDEO_TIMESCALE // 1000, keyframe, data))
        return out

    def _cut_audio(self, dts_ms: int, kind: Cut) -> list[PackagerOutput]:
        """The video was cut at `dts_ms`: the audio part (or segment) closes once its frames reach
        that instant — at once when they already do (FLV interleaving sends them first)."""
        a = self.audio
        assert a is not None
        a.cuts.append((dts_ms * a.timescale // 1000, kind))
        return self._apply_audio_cuts(a)

    def _apply_audio_cuts(self, a: _TrackState) -> list[PackagerOutput]:
        out: list[PackagerOutput] = []
        while a.cuts and a.open and a.end >= a.cuts[0][0]:
            out += a.close(a.cuts.popleft()[1], None)
        return out

    def audio_frame(self, dts_ms: int, data: bytes) -> list[PackagerOutput]:
        a = self.audio
        if a is None:
            return []
        ideal = dts_ms * a.timescale // 1000
        if a.part or a.parts or a.end:
            expected = a.end
            # Millisecond timestamps jitter by up to 1 ms; keep sample-exact spacing unless
            # the source really jumped (gap or overlap of more than a frame).
            dts = expected if abs(ideal - expected) <= SAMPLES_PER_FRAME else max(ideal, a.end - SAMPLES_PER_FRAME + 1)
        else:
            dts = ideal
        out: list[PackagerOutput] = []
        if self.video is None:
            cut = self.audio_clock.starts(dts_ms, True)
            if cut != Cut.NONE and a.open:
                out += a.close(cut, None)
        else:
            while a.cuts and dts >= a.cuts[0][0]:  # a gap in the audio: the cut falls before this frame
                kind = a.cuts.popleft()[1]
                if a.open:
                    out += a.close(kind, None)
            if a.seg_start is not None and (dts - a.seg_start) * 1000 >= MAX_SEGMENT_FACTOR * self.target_duration_ms * a.timescale:
                out += a.close(Cut.SEGMENT, None)
        a.add(Sample(dts, SAMPLES_PER_FRAME, 0, True, data), known_duration=True)
        if self.video is not None:
            out += self._apply_audio_cuts(a)
        return out

    def finish(self) -> list[PackagerOutput]:
        """End of stream: close every open segment."""
        out: list[PackagerOutput] = []
        for st in (self.video, self.audio):
            if st is not None:
                st.cuts.clear()
                out += st.close_segment(None)
        return out
