"""CMAF segmenter: timed access units in, init segments and keyframe-aligned media segments out.

Each track becomes its own rendition ("video", "audio"). The video track leads: a segment is
cut at the first keyframe at least `target_duration_ms` after the segment start, and the audio
track is cut at the same instant, so both renditions share segment boundaries and numbers.
Without video, audio cuts on its own clock. Pure computation: callers feed frames and get
`PackagerOutput` values back (Membrane-style), which makes it testable without a runtime.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from ..aac import SAMPLES_PER_FRAME, AacInfo, parse_audio_specific_config
from ..avc import SpsInfo, sps_from_avcc
from .fmp4 import AudioTrack, Sample, Track, VideoTrack, fragment, init_segment

log = logging.getLogger(__name__)

VIDEO_TIMESCALE = 90000
# Safety valve: if the video track stalls, audio still cuts rather than buffering forever.
MAX_SEGMENT_FACTOR = 5


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
class MediaSegment:
    rendition: str
    index: int  # per rendition, starts at 0, +1 per segment
    start_s: float  # media time of the first sample
    duration_s: float
    data: bytes
    frames: int


PackagerOutput = InitSegment | MediaSegment


@dataclass
class _TrackState:
    rendition: str
    track: Track
    pending: list[Sample] = field(default_factory=list)
    held: Sample | None = None  # last sample: its duration is known only when the next arrives
    next_index: int = 0
    seg_start: int | None = None  # dts (track units) of the first sample of the open segment
    cuts: deque[int] = field(default_factory=deque)  # cut instants (track units) not yet applied
    last_duration: int = 0

    @property
    def timescale(self) -> int:
        return self.track.timescale

    def add(self, sample: Sample) -> None:
        if self.held is not None:
            self._complete_held(sample.dts)
        if self.seg_start is None:
            self.seg_start = sample.dts
        self.held = sample

    def _complete_held(self, next_dts: int) -> None:
        assert self.held is not None
        self.held.duration = max(1, next_dts - self.held.dts)
        self.last_duration = self.held.duration
        self.pending.append(self.held)
        self.held = None

    def cut_at(self, dts: int) -> MediaSegment | None:
        """Close the open segment at instant `dts`, where the next sample starts."""
        if self.held is not None:
            self._complete_held(dts)
        return self._emit()

    def finish(self) -> MediaSegment | None:
        if self.held is not None:
            self._complete_held(self.held.dts + (self.last_duration or 1))
        return self._emit()

    def _emit(self) -> MediaSegment | None:
        self.seg_start = None
        if not self.pending:
            return None
        seg = MediaSegment(
            self.rendition,
            self.next_index,
            self.pending[0].dts / self.timescale,
            sum(s.duration for s in self.pending) / self.timescale,
            fragment(self.track, self.next_index + 1, self.pending),
            len(self.pending),
        )
        self.next_index += 1
        self.pending = []
        return seg


class CmafPackager:
    def __init__(self, target_duration_ms: int = 2000, video_rendition: str = "video") -> None:
        self.target_duration_ms = target_duration_ms
        self.video_rendition = video_rendition
        # Video segments begun so far; a change across a `video_frame` call means that frame
        # starts a segment (what the ladder transcoder aligns its keyframes to).
        self.segments_started = 0
        self.video: _TrackState | None = None
        self.audio: _TrackState | None = None
        self.sps: SpsInfo | None = None
        self.aac: AacInfo | None = None
        self._seen_keyframe = False

    @property
    def video_avcc(self) -> bytes | None:
        return self.video.track.avcc if self.video is not None else None  # type: ignore[union-attr]

    @property
    def audio_asc(self) -> bytes | None:
        return self.audio.track.audio_specific_config if self.audio is not None else None  # type: ignore[union-attr]

    # -- configuration ------------------------------------------------------------------
    def video_config(self, avcc: bytes) -> list[PackagerOutput]:
        sps = sps_from_avcc(avcc)
        if self.video is not None:
            if self.video.track.avcc == avcc:  # type: ignore[union-attr]
                return []
            # A changed config (resolution switch) needs a discontinuity; handled by the caller.
            raise ValueError("video configuration changed mid-stream")
        self.sps = sps
        track = VideoTrack(avcc, sps.width, sps.height, VIDEO_TIMESCALE)
        self.video = _TrackState(self.video_rendition, track)
        return [InitSegment(self.video_rendition, init_segment(track), sps.codec_string, width=sps.width, height=sps.height)]

    def audio_config(self, asc: bytes) -> list[PackagerOutput]:
        info = parse_audio_specific_config(asc)
        if self.audio is not None:
            if self.audio.track.audio_specific_config == asc:  # type: ignore[union-attr]
                return []
            raise ValueError("audio configuration changed mid-stream")
        self.aac = info
        track = AudioTrack(asc, info.sample_rate, info.channels)
        self.audio = _TrackState("audio", track)
        return [InitSegment("audio", init_segment(track), info.codec_string, sample_rate=info.sample_rate, channels=info.channels)]

    # -- media ----------------------------------------------------------------------------
    def video_frame(self, dts_ms: int, cts_ms: int, keyframe: bool, data: bytes) -> list[PackagerOutput]:
        v = self.video
        if v is None:
            return []
        if not self._seen_keyframe:
            if not keyframe:
                return []  # undecodable without the preceding keyframe
            self._seen_keyframe = True
            self.segments_started += 1
        dts = dts_ms * VIDEO_TIMESCALE // 1000
        if v.held is not None and dts <= v.held.dts:
            dts = v.held.dts + 1
        out: list[PackagerOutput] = []
        if keyframe and v.seg_start is not None and (dts - v.seg_start) * 1000 >= self.target_duration_ms * VIDEO_TIMESCALE:
            seg = v.cut_at(dts)
            if seg is not None:
                out.append(seg)
            self.segments_started += 1
            if self.audio is not None:
                self.audio.cuts.append(dts_ms * self.audio.timescale // 1000)
        v.add(Sample(dts, 0, max(0, cts_ms) * VIDEO_TIMESCALE // 1000, keyframe, data))
        return out

    def audio_frame(self, dts_ms: int, data: bytes) -> list[PackagerOutput]:
        a = self.audio
        if a is None:
            return []
        ideal = dts_ms * a.timescale // 1000
        if a.held is not None:
            expected = a.held.dts + SAMPLES_PER_FRAME
            # Millisecond timestamps jitter by up to 1 ms; keep sample-exact spacing unless
            # the source really jumped (gap or overlap of more than a frame).
            dts = expected if abs(ideal - expected) <= SAMPLES_PER_FRAME else max(ideal, a.held.dts + 1)
        else:
            dts = ideal
        out: list[PackagerOutput] = []
        if self.video is None:
            if a.seg_start is not None and (dts - a.seg_start) * 1000 >= self.target_duration_ms * a.timescale:
                a.cuts.append(dts)
        elif a.seg_start is not None and (dts - a.seg_start) * 1000 >= MAX_SEGMENT_FACTOR * self.target_duration_ms * a.timescale:
            a.cuts.append(dts)
        while a.cuts and dts >= a.cuts[0]:
            a.cuts.popleft()
            seg = a.cut_at(dts)
            if seg is not None:
                out.append(seg)
        a.add(Sample(dts, SAMPLES_PER_FRAME, 0, True, data))
        return out

    def finish(self) -> list[PackagerOutput]:
        """End of stream: close every open segment."""
        out: list[PackagerOutput] = []
        for st in (self.video, self.audio):
            if st is not None:
                seg = st.finish()
                if seg is not None:
                    out.append(seg)
        return out
