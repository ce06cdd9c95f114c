"""Audio that HLS players cannot play, re-encoded to AAC-LC with PyAV (imported only when needed)."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av
from av.codec.context import CodecContext

from .media import AudioConfig, AudioFrame

log = logging.getLogger(__name__)


class AudioToAac:
    """Non-AAC audio (MP3: `ffmpeg -f flv`'s default) decoded and re-encoded to AAC-LC, the one
    audio codec every HLS player plays. Returns the same events an AAC publisher would produce."""

    def __init__(self, codec: str = "mp3", bit_rate: int = 128_000) -> None:
        self.decoder = CodecContext.create(codec, "r")
        self.bit_rate = bit_rate
        self.encoder: Any = None
        self._base_ms: int | None = None
        self._samples = 0  # AAC samples produced so far

    def push(self, dts_ms: int, data: bytes) -> list[AudioConfig | AudioFrame]:
        out: list[AudioConfig | AudioFrame] = []
        pkt = av.Packet(data)
        pkt.pts, pkt.time_base = dts_ms, Fraction(1, 1000)
        try:
            frames = self.decoder.decode(pkt)  # type: ignore[attr-defined]
        except av.error.FFmpegError as exc:
            log.info("audio: undecodable frame at %d ms skipped (%s)", dts_ms, exc)
            return out
        for frame in frames:
            if self.encoder is None:
                enc = CodecContext.create("aac", "w")
                enc.sample_rate, enc.layout, enc.format = frame.sample_rate, frame.layout.name, "fltp"
                enc.bit_rate = self.bit_rate
                enc.flags |= av.codec.context.Flags.global_header  # the AudioSpecificConfig
                enc.open()
                self.encoder, self._base_ms = enc, dts_ms
                out.append(AudioConfig(bytes(enc.extradata or b"")))
            frame.pts = None  # the encoder counts samples; timestamps come from _samples
            for packet in self.encoder.encode(frame):
                ms = (self._base_ms or 0) + self._samples * 1000 // self.encoder.sample_rate
                self._samples += self.encoder.frame_size or 1024
                out.append(AudioFrame(ms, bytes(packet)))
        return out
