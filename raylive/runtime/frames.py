"""Decoded frames for researchers and thumbnails: compressed video in, RGB numpy frames out.

`FrameSampler` takes the same inputs as the ladder transcoder (`LadderPeriod`, `LadderConfig`,
`LadderFrame`: what the stream actor taps), decodes every frame, keeps at most `fps` frames per
second of media time and scales them to a rendition's height. Pure computation, no Ray.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import av.error
import numpy as np
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext
from av.video.frame import VideoFrame

from .decoding import open_decoder
from .ladder import LadderConfig, LadderFrame, LadderInput, LadderPeriod
from .transcode import scale_graph


class FrameSampler:
    def __init__(self, fps: float, height: int | None = None, gpu: bool = False) -> None:
        self.interval_ms = 1000.0 / fps if fps > 0 else 0.0
        self.height = height
        self.gpu = gpu  # decode with NVDEC where it can (`open_decoder`)
        self.decoder: VideoCodecContext | None = None
        self._graph: av.filter.Graph | None = None
        self._graph_key: tuple[int, int] | None = None
        self._next_ms: float | None = None
        self.decoded = 0
        self.undecodable = 0  # frames the decoder refused (after a gap, say): skipped

    def push(self, items: list[LadderInput]) -> list[tuple[float, np.ndarray]]:
        """(media time in s, HxWx3 uint8 RGB) for each frame kept."""
        out: list[tuple[float, np.ndarray]] = []
        for item in items:
            if isinstance(item, LadderConfig):
                self.decoder = open_decoder(item.video, self.gpu)
            elif isinstance(item, LadderPeriod):
                self.decoder, self._next_ms = None, None  # timestamps restart; a config follows
            elif self.decoder is not None:
                self._decode(item, out)
        return out

    def _decode(self, f: LadderFrame, out: list[tuple[float, np.ndarray]]) -> None:
        assert self.decoder is not None
        pkt = av.Packet(f.data)
        pkt.dts, pkt.pts, pkt.time_base = f.dts_ms, f.dts_ms + f.cts_ms, Fraction(1, 1000)
        try:
            frames = self.decoder.decode(pkt)
        except av.error.FFmpegError:
            self.undecodable += 1
            return
        for frame in frames:
            self.decoded += 1
            pts = frame.pts or 0
            if self._next_ms is not None and pts < self._next_ms:
                continue
            self._next_ms = pts + self.interval_ms - 2  # millisecond timestamps jitter by a ms or two
            out.append((pts / 1000, self._rgb(frame)))

    def _rgb(self, frame: VideoFrame) -> np.ndarray:
        if self.height is None or self.height >= frame.height:
            return frame.to_ndarray(format="rgb24")
        width = max(2, round(frame.width * self.height / frame.height / 2) * 2)
        key = (frame.width, frame.height)
        if self._graph is None or self._graph_key != key:
            self._graph, self._graph_key = scale_graph(frame, width, self.height, "rgb24"), key
        self._graph.push(frame)
        return self._graph.vpull().to_ndarray()


def segment_jpeg(init: bytes, segment: bytes, width: int = 320) -> bytes:
    """A JPEG thumbnail of a CMAF segment's first frame (a keyframe: every segment starts with one),
    from the rendition's init segment and the media segment as stored."""
    try:
        with av.open(io.BytesIO(init + segment), mode="r", format="mp4") as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # frame threads deadlocked on free (PyAV 18)
            frame = next(container.decode(stream), None)
    except (av.error.FFmpegError, IndexError) as exc:
        raise ValueError(f"the segment did not decode: {exc}") from exc
    if frame is None:
        raise ValueError("the segment has no frame")
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    g = scale_graph(frame, width, height, "yuvj420p")
    g.push(frame)
    small = g.vpull()
    enc = CodecContext.create("mjpeg", "w")
    assert isinstance(enc, VideoCodecContext)
    enc.width, enc.height, enc.pix_fmt, enc.time_base = width, height, "yuvj420p", Fraction(1, 25)
    enc.open()
    return b"".join(bytes(packet) for packet in [*enc.encode(small), *enc.encode(None)])
