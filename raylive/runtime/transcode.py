"""ABR ladder transcoding: one H.264, HEVC or AV1 source in, N H.264 renditions out as CMAF segments.

`LadderTranscoder` decodes the source once, scales it per rung through an `av.filter.Graph` and
encodes each rung (libx264, or NVENC where a GPU is visible). Segment boundaries follow the
source: the caller marks the frames where the source's segments start, each rung forces an IDR
there and makes no keyframe of its own, and each rung's packager cuts at every keyframe. So all
renditions share keyframe times and segment numbers. Pure computation, no Ray.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction

import av
import av.error
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame

from .avc import annexb_to_avcc_sample, avcc_from_annexb
from .decoding import open_decoder
from .ladder import ENCODERS, LadderConfig, LadderFrame, LadderInput, PlannedRung, RungOutput, plan_ladder
from .media import VideoConfig
from .packaging.cmaf import CmafPackager, Cut, PackagerOutput
from .video import describe

log = logging.getLogger(__name__)

# No keyframes but the forced ones: a rung's GOP is the source's segment.
NO_OWN_KEYFRAMES = str(1 << 20)


def choose_encoder(requested: str, gpu_visible: bool) -> str:
    """The FFmpeg encoder name for `encoder: auto | x264 | nvenc`."""
    if requested == "auto":
        if gpu_visible and ENCODERS["nvenc"] in av.codecs_available:
            return ENCODERS["nvenc"]
        log.info("encoder auto: %s; using libx264", "no GPU visible to this process" if not gpu_visible else "no NVENC in this FFmpeg")
        return ENCODERS["x264"]
    return ENCODERS[requested]


def open_encoder(codec: str, rung: PlannedRung, frame_rate: float, preset: str, zerolatency: bool = False) -> VideoCodecContext:
    ctx = CodecContext.create(codec, "w")
    assert isinstance(ctx, VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = rung.width, rung.height, "yuv420p"
    ctx.time_base = Fraction(1, 1000)  # RTMP timestamps are milliseconds
    ctx.framerate = Fraction(frame_rate).limit_denominator(1001)
    ctx.bit_rate = rung.video_kbps * 1000
    ctx.flags |= av.codec.context.Flags.global_header  # SPS/PPS in extradata -> the avcC record
    kbps = rung.video_kbps
    common = {"g": NO_OWN_KEYFRAMES, "bf": "0", "forced-idr": "1", "maxrate": str(kbps * 1200), "bufsize": str(kbps * 2000)}
    if codec == ENCODERS["x264"]:
        # No lookahead: with it each frame waited for 10 more (≈ 0.35 s at 30 fps) before a rung's
        # part could be cut; a rung listed its parts 0.6 s after the source's.
        ctx.options = {**common, "preset": preset, "sc_threshold": "0", "rc-lookahead": "0"}
        if zerolatency:  # slice threads: each frame's packet at once (frame threads hold a few frames back)
            ctx.options["tune"] = "zerolatency"
    else:
        ctx.options = {**common, "preset": "p4", "rc": "vbr"}
    ctx.open()
    return ctx


def scale_graph(frame: VideoFrame, width: int, height: int, fmt: str) -> av.filter.Graph:
    """buffer -> scale -> format -> buffersink for frames like `frame` (≈ 1.7x faster than reformat)."""
    g = av.filter.Graph()
    src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1000))
    scale = g.add("scale", f"{width}:{height}")
    conv = g.add("format", fmt)
    src.link_to(scale)
    scale.link_to(conv)
    conv.link_to(g.add("buffersink"))
    g.configure()
    return g


class RungEncoder:
    """One rendition encoded from decoded frames: scaled, encoded with keyframes only where told
    (`mark`), packaged into CMAF cut where the source was. A ladder rung, or a processor's output."""

    def __init__(self, plan: PlannedRung, encoder: VideoCodecContext, parts: bool, first_segment: int = 0) -> None:
        self.plan = plan
        self.encoder = encoder
        self.packager = CmafPackager(0, video_rendition=plan.name, parts=parts, first_segment=first_segment)
        self.graph: av.filter.Graph | None = None
        self.graph_input: tuple[int, int, str] | None = None
        self.cuts: set[int] = set()  # pts (ms) of frames forced to start a segment
        self.part_cuts: set[int] = set()  # pts (ms) of frames that start a part
        self.busy_s = 0.0  # wall time spent scaling and encoding

    def mark(self, pts_ms: int, segment: bool, part: bool) -> None:
        """The source starts a segment (or a part) at the frame presented at `pts_ms`."""
        if segment:
            self.cuts.add(pts_ms)
        elif part:
            self.part_cuts.add(pts_ms)

    def encode(self, frame: VideoFrame | None) -> list[PackagerOutput]:
        """`frame` (any size and format; pts in ms) encoded and packaged; None drains the encoder."""
        t0 = time.perf_counter()
        if frame is None:
            packets = self.encoder.encode(None)
        else:
            scaled = self._scale(frame)
            scaled.pict_type = PictureType.I if frame.pts in self.cuts else PictureType.NONE
            packets = self.encoder.encode(scaled)
        out: list[PackagerOutput] = []
        for p in packets:
            out += self._package(p)
        self.busy_s += time.perf_counter() - t0
        return out

    def finish(self) -> list[PackagerOutput]:
        """Drain the encoder and close the open segment."""
        return self.encode(None) + self.packager.finish()

    def _scale(self, frame: VideoFrame) -> VideoFrame:
        key = (frame.width, frame.height, frame.format.name)
        if self.graph is None or self.graph_input != key:
            self.graph, self.graph_input = scale_graph(frame, self.plan.width, self.plan.height, "yuv420p"), key
        self.graph.push(frame)
        out = self.graph.vpull()
        out.pts = frame.pts
        return out

    def _package(self, p: av.Packet) -> list[PackagerOutput]:
        outputs: list[PackagerOutput] = []
        if self.packager.video is None:
            outputs += self.packager.video_config(VideoConfig(avcc_from_annexb(bytes(self.encoder.extradata or b""))))
        pts = p.pts if p.pts is not None else 0
        dts = p.dts if p.dts is not None else pts
        cut = Cut.NONE
        if pts in self.cuts:
            self.cuts.discard(pts)
            cut = Cut.SEGMENT if p.is_keyframe else Cut.PART
            if not p.is_keyframe:
                log.warning("rung %s: encoder ignored a forced keyframe at %d ms", self.plan.name, pts)
        elif pts in self.part_cuts:
            self.part_cuts.discard(pts)
            cut = Cut.PART
        # Its keyframe flag, not "starts a segment": the first frame of a rung started mid-segment
        # is one too (the packager dropped every frame up to the next segment).
        outputs += self.packager.video_frame(dts, pts - dts, p.is_keyframe, annexb_to_avcc_sample(bytes(p)), cut=cut)
        return outputs


class LadderTranscoder:
    def __init__(
        self,
        ladder: list[str],
        renditions: dict[str, dict[str, int]],
        encoder: str = "auto",
        preset: str = "veryfast",
        gpu_visible: bool = False,
    ) -> None:
        self.ladder = ladder
        self.renditions = renditions
        self.preset = preset
        self.codec = choose_encoder(encoder, gpu_visible)
        self.epoch = ""
        self.rungs: list[RungEncoder] = []
        self.dropped: list[str] = []  # rungs given up for lack of CPU, in order
        self.decoder: VideoCodecContext | None = None
        self.media_ms = 0  # pts of the latest frame encoded
        self._first_pts: int | None = None
        self._source: VideoConfig | None = None

    @property
    def planned(self) -> list[PlannedRung]:
        return [r.plan for r in self.rungs]

    def push(self, items: list[LadderInput]) -> list[RungOutput]:
        out: list[RungOutput] = []
        for item in items:
            if isinstance(item, LadderFrame):
                if self.decoder is not None and self.rungs:
                    self._decode(item, out)
            elif isinstance(item, LadderConfig):
                if item.video != self._source:
                    out += self._close_period()
                    self._configure(item)
            else:
                out += self._close_period()
                self.epoch = item.epoch
                self._source = None  # a new period brings its own configuration
        return out

    def finish(self) -> list[RungOutput]:
        """End of the period (publisher gone): flush the encoders and close the open segments."""
        out = self._close_period()
        self._source = None
        return out

    def drop_most_expensive(self) -> str | None:
        """Give up the rung that costs the most (the largest); returns its name."""
        if not self.rungs:
            return None
        rung = max(self.rungs, key=lambda r: r.plan.pixel_rate_weight)
        self.rungs.remove(rung)
        self.dropped.append(rung.plan.name)
        return rung.plan.name

    def realtime_factors(self) -> dict[str, float]:
        """Media seconds encoded per wall second spent, per rung (> 1: faster than real time)."""
        if self._first_pts is None:
            return {}
        media_s = (self.media_ms - self._first_pts) / 1000
        return {r.plan.name: round(media_s / r.busy_s, 2) if r.busy_s else 0.0 for r in self.rungs}

    # -- internals -----------------------------------------------------------------------
    def _configure(self, cfg: LadderConfig) -> None:
        sps = describe(cfg.video)
        self._source = cfg.video
        plans = [
            p for p in plan_ladder(self.ladder, self.renditions, sps.width, sps.height, cfg.source_kbps, sps.codec)
            if p.name not in self.dropped
        ]  # fmt: skip
        self.decoder = open_decoder(cfg.video)
        self.rungs = []
        for plan in plans:
            enc = self._open(plan, cfg.frame_rate)
            self.rungs.append(RungEncoder(plan, enc, cfg.parts))
        if plans:
            log.info(
                "ladder for %dx%d: %s with %s",
                sps.width,
                sps.height,
                ", ".join(f"{p.name} {p.width}x{p.height} {p.video_kbps}k" for p in plans),
                self.codec,
            )

    def _open(self, plan: PlannedRung, frame_rate: float) -> VideoCodecContext:
        try:
            return open_encoder(self.codec, plan, frame_rate, self.preset)
        except (av.error.FFmpegError, ValueError) as exc:
            if self.codec == ENCODERS["x264"]:
                raise
            # Said once: every later rung and stream on this actor uses libx264.
            log.warning("%s failed to open (%s); falling back to libx264", self.codec, exc)
            self.codec = ENCODERS["x264"]
            return open_encoder(self.codec, plan, frame_rate, self.preset)

    def _decode(self, f: LadderFrame, out: list[RungOutput]) -> None:
        assert self.decoder is not None
        pkt = av.Packet(f.data)
        pkt.dts, pkt.pts = f.dts_ms, f.dts_ms + f.cts_ms
        pkt.time_base = Fraction(1, 1000)
        if f.keyframe:
            pkt.is_keyframe = True
        for r in self.rungs:
            r.mark(f.dts_ms + f.cts_ms, f.starts_segment, f.starts_part)
        try:
            frames = self.decoder.decode(pkt)
        except av.error.FFmpegError as exc:
            log.warning("ladder: undecodable frame at %d ms skipped (%s)", f.dts_ms, exc)
            return
        for frame in frames:
            self._encode(frame, out)

    def _encode(self, frame: VideoFrame | None, out: list[RungOutput]) -> None:
        if frame is not None and frame.pts is not None:
            if self._first_pts is None:
                self._first_pts = frame.pts
            self.media_ms = max(self.media_ms, frame.pts)
        for r in self.rungs:
            out += [RungOutput(self.epoch, o) for o in r.encode(frame)]

    def _close_period(self) -> list[RungOutput]:
        out: list[RungOutput] = []
        if self.decoder is not None and self.rungs:
            try:
                for frame in self.decoder.decode(None):
                    self._encode(frame, out)
            except av.error.FFmpegError:
                pass
            for r in self.rungs:  # drain the encoders, close the segments
                out += [RungOutput(self.epoch, o) for o in r.finish()]
        self.decoder = None
        self.rungs = []
        return out
