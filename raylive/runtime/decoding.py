"""Decoders for the compressed video a stream actor taps: the CPU's, or NVDEC where asked for and
this FFmpeg has it (`h264_cuvid` and the like). Pure computation, no Ray."""

from __future__ import annotations

import logging

import av
import av.error
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext

from .media import VideoConfig
from .video import DECODERS

log = logging.getLogger(__name__)

GPU_DECODERS = {"avc1": "h264_cuvid", "hvc1": "hevc_cuvid", "av01": "av1_cuvid"}
_nvdec_refused = False  # NVDEC failed to open once in this process: the CPU decodes from then on


def open_decoder(config: VideoConfig, gpu: bool = False) -> VideoCodecContext:
    """A decoder for `config`; with `gpu`, NVDEC (`h264_cuvid` and the like) where this FFmpeg has it
    and it opens, else the CPU's, said once in the log (frames come to system memory either way)."""
    global _nvdec_refused
    name = GPU_DECODERS.get(config.codec, "")
    if gpu and not _nvdec_refused:
        try:
            if name not in av.codecs_available:
                raise ValueError(f"this FFmpeg has no {name or 'NVDEC decoder for ' + config.codec}")
            nvdec = CodecContext.create(name, "r")
            assert isinstance(nvdec, VideoCodecContext)
            nvdec.extradata = config.record
            nvdec.open()
            return nvdec
        except (av.error.FFmpegError, ValueError) as exc:
            _nvdec_refused = True
            log.warning("NVDEC decoding unavailable (%s): decoding on the CPU", exc)
    decoder = CodecContext.create(DECODERS[config.codec], "r")
    assert isinstance(decoder, VideoCodecContext)
    decoder.extradata = config.record
    # Not frame threads: they release packets (which wrap Python bytes) from their own
    # threads, and freeing the decoder then deadlocks on the GIL (seen in PyAV 18).
    decoder.thread_type = "SLICE"
    return decoder
