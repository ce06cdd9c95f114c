"""From RTMP media messages to a timed, typed stream: timestamp unwrapping, FLV parsing, stats.

The per-stream actor owns one `IngestTimeline`; its output feeds the packager (and, later, the
transcoder and researcher taps). Pure computation, no I/O.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import flv
from .media import AudioConfig, AudioFrame, MediaEvent, Metadata, VideoConfig, VideoFrame
from .rtmp import amf0
from .rtmp.chunk import AUDIO, DATA_AMF0, VIDEO


class UnsupportedMedia(ValueError):
    """The publisher sends something this server cannot package (e.g. a codec)."""


RawMessage = tuple[int, int, bytes]  # (RTMP type id, 32-bit ms timestamp, payload)


@dataclass
class IngestStats:
    bytes_in: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    last_keyframe_ms: int | None = None
    keyframe_interval_ms: int = 0
    late_frames: int = 0  # video frames whose timestamp went back (interleaving bugs, encoder restarts)
    _last_video_dts: int | None = None
    _recent: deque[tuple[float, int, int]] = field(default_factory=deque)  # (wall, bytes, video frames)

    _latest: tuple[float, int, int] | None = None  # the newest push, sampled or not

    def sample(self, now: float) -> None:
        self._latest = (now, self.bytes_in, self.video_frames)
        if self._recent and now - self._recent[-1][0] < 0.5:
            return
        self._recent.append((now, self.bytes_in, self.video_frames))
        while len(self._recent) > 2 and now - self._recent[0][0] > 5:
            self._recent.popleft()

    def window_s(self) -> float:
        """Wall time the rates are measured over."""
        return self._recent[-1][0] - self._recent[0][0] if len(self._recent) >= 2 else 0.0

    def rates(self) -> tuple[float, float]:
        """(bitrate kbps, fps) over the last few seconds of wall time, up to the newest push (the
        status written when a publish's first part appears, 0.25 s in, said 0 kb/s otherwise)."""
        if not self._recent or self._latest is None:
            return 0.0, 0.0
        (t0, b0, f0), (t1, b1, f1) = self._recent[0], self._latest
        dt = t1 - t0
        return ((b1 - b0) * 8 / 1000 / dt, (f1 - f0) / dt) if dt > 0 else (0.0, 0.0)


class IngestTimeline:
    def __init__(self) -> None:
        self._last_raw: int | None = None
        self._ext = 0
        self._origin: int | None = None
        self.stats = IngestStats()
        self.metadata: dict[str, Any] = {}
        self._mp3: Any = None  # AudioToAac once the publisher sends MP3

    def _unwrap(self, raw: int) -> int:
        """32-bit wrapping RTMP ms timestamps -> ms since the stream's first message."""
        if self._last_raw is None:
            self._ext = raw
        else:
            delta = (raw - self._last_raw) & 0xFFFFFFFF
            if delta >= 0x80000000:  # went backwards (interleaving or a real jump back)
                delta -= 0x100000000
            self._ext += delta
        self._last_raw = raw
        if self._origin is None:
            self._origin = self._ext
        return max(0, self._ext - self._origin)

    def push(self, messages: list[RawMessage]) -> list[MediaEvent]:
        out: list[MediaEvent] = []
        for type_id, ts, payload in messages:
            self.stats.bytes_in += len(payload)
            if type_id == VIDEO:
                self._video(ts, payload, out)
            elif type_id == AUDIO:
                self._audio(ts, payload, out)
            elif type_id == DATA_AMF0:
                self._data(payload, out)
        self.stats.sample(time.monotonic())
        return out

    def _video(self, ts: int, payload: bytes, out: list[MediaEvent]) -> None:
        tag = flv.parse_video(payload)
        if isinstance(tag, flv.UnsupportedCodec):
            raise UnsupportedMedia(f"unsupported video codec {tag.name}; publish H.264, HEVC or AV1")
        if isinstance(tag, flv.VideoSequenceStart):
            out.append(VideoConfig(tag.record, tag.codec))
        elif isinstance(tag, flv.CodedVideoFrame):
            dts = self._unwrap(ts)
            self.stats.video_frames += 1
            if self.stats._last_video_dts is not None and dts < self.stats._last_video_dts:
                self.stats.late_frames += 1
            self.stats._last_video_dts = dts
            if tag.keyframe:
                self.stats.keyframes += 1
                if self.stats.last_keyframe_ms is not None and dts >= self.stats.last_keyframe_ms:
                    # (a publisher whose timestamps went back has no interval to report)
                    self.stats.keyframe_interval_ms = dts - self.stats.last_keyframe_ms
                self.stats.last_keyframe_ms = dts
            out.append(VideoFrame(dts, tag.composition_time, tag.keyframe, tag.data))

    def _audio(self, ts: int, payload: bytes, out: list[MediaEvent]) -> None:
        tag = flv.parse_audio(payload)
        if isinstance(tag, flv.UnsupportedCodec):
            raise UnsupportedMedia(f"unsupported audio codec {tag.name}; publish AAC (or MP3)")
        if isinstance(tag, flv.Mp3Frame):
            if self._mp3 is None:
                from .audio import AudioToAac  # PyAV only for streams that need it

                self._mp3 = AudioToAac("mp3")
            self.stats.audio_frames += 1
            out.extend(self._mp3.push(self._unwrap(ts), tag.data))
        elif isinstance(tag, flv.AacConfig):
            out.append(AudioConfig(tag.audio_specific_config))
        elif isinstance(tag, flv.AacFrame):
            self.stats.audio_frames += 1
            out.append(AudioFrame(self._unwrap(ts), tag.data))

    def _data(self, payload: bytes, out: list[MediaEvent]) -> None:
        try:
            values = amf0.decode(payload)
        except amf0.Amf0Error:
            return  # metadata is advisory; a malformed one must not end the stream
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            self.metadata = {k: v for k, v in values[1].items() if isinstance(v, (int, float, str, bool))}
            out.append(Metadata(self.metadata))
