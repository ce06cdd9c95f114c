"""HEVC and AV1 over Enhanced RTMP, as PyAV's FLV muxer (FFmpeg 8) writes them: parsed, packaged
into CMAF that FFmpeg reads back, and decoded by the ladder's decoder."""

from __future__ import annotations

import io

import av
import pytest

from raylive.runtime import flv
from raylive.runtime.av1 import describe_av1c
from raylive.runtime.hevc import describe_hvcc
from raylive.runtime.ingest import IngestTimeline, UnsupportedMedia
from raylive.runtime.ladder import LadderConfig, LadderFrame
from raylive.runtime.media import VideoConfig, VideoFrame
from raylive.runtime.packaging.cmaf import CmafPackager, Cut, CutClock, InitSegment, MediaSegment
from raylive.runtime.rtmp.chunk import AUDIO, VIDEO
from raylive.runtime.transcode import LadderTranscoder
from raylive.runtime.video import describe
from raylive.settings import TranscodeSettings
from tests.helpers import pyav_flv


def _video(codec: str) -> list[flv.VideoTag]:
    return [flv.parse_video(body) for kind, _, body in pyav_flv(codec) if kind == VIDEO]


@pytest.mark.parametrize(("codec", "fourcc", "codec_string"), [("hevc", "hvc1", "hvc1.1.6.L60.90"), ("av1", "av01", "av01.0.00M.08")])
def test_sequence_start_gives_the_codec_string_and_size(codec: str, fourcc: str, codec_string: str) -> None:
    tags = _video(codec)
    start = tags[0]
    assert isinstance(start, flv.VideoSequenceStart) and start.codec == fourcc
    info = describe(VideoConfig(start.record, start.codec))
    assert (info.codec_string, info.width, info.height) == (codec_string, 320, 180)
    frames = [t for t in tags if isinstance(t, flv.CodedVideoFrame)]
    assert len(frames) == 90 and sum(f.keyframe for f in frames) == 3  # 1 s GOP at 30 fps for 3 s
    if codec == "av1":  # samples without temporal delimiters (AV1-ISOBMFF 2.4)
        assert all(f.data[0] >> 3 & 0x0F != 2 for f in frames)
    else:  # HEVC B-frames carry their composition time; CodedFramesX ones have none
        assert any(f.composition_time > 0 for f in frames)


def test_other_fourccs_and_broken_records_are_clear_errors() -> None:
    assert flv.parse_video(bytes([0x90]) + b"vp09" + bytes(8)) == flv.UnsupportedCodec("video", "enhanced-RTMP vp09")
    timeline = IngestTimeline()
    with pytest.raises(UnsupportedMedia, match="vp09; publish H.264, HEVC or AV1"):
        timeline.push([(VIDEO, 0, bytes([0x90]) + b"vp09" + bytes(8))])
    with pytest.raises(flv.FlvError):
        flv.parse_video(bytes([0x90]) + b"hv")
    with pytest.raises(ValueError, match="bad HEVC configuration"):
        describe(VideoConfig(bytes(30), "hvc1"))
    with pytest.raises(ValueError, match="bad AV1 configuration"):
        describe(VideoConfig(b"\x81\x00\x0c\x00", "av01"))


def test_multitrack_and_modex_reach_track_zero() -> None:
    start = _video("hevc")[0]
    assert isinstance(start, flv.VideoSequenceStart)
    record = start.record
    # ManyTracks of hvc1: track 1 first, then track 0 (sizes are UI24).
    many = bytes([0x80 | 0x10 | flv.MULTITRACK, flv.MANY_TRACKS << 4 | flv.SEQUENCE_START]) + b"hvc1"
    many += bytes([1]) + (3).to_bytes(3, "big") + b"xyz" + bytes([0]) + len(record).to_bytes(3, "big") + record
    assert flv.parse_video(many) == flv.VideoSequenceStart("hvc1", record)
    one = bytes([0x80 | 0x10 | flv.MULTITRACK, flv.ONE_TRACK << 4 | flv.SEQUENCE_START]) + b"hvc1" + bytes([0]) + record
    assert flv.parse_video(one) == flv.VideoSequenceStart("hvc1", record)
    # A ModEx prefix (a nanosecond offset, 3 bytes) before a CodedFramesX packet.
    modex = bytes([0x80 | 0x10 | flv.MOD_EX, 2, 0, 0, 7, 0 << 4 | flv.CODED_FRAMES_X]) + b"hvc1" + b"\x00\x00\x00\x01\x26"
    assert flv.parse_video(modex) == flv.CodedVideoFrame(True, 0, b"\x00\x00\x00\x01\x26")
    # Enhanced AAC audio is AAC.
    assert flv.parse_audio(bytes([0x90 | flv.SEQUENCE_START]) + b"mp4a" + b"\x11\x90") == flv.AacConfig(b"\x11\x90")
    assert flv.parse_audio(bytes([0x90 | flv.CODED_FRAMES]) + b"mp4a" + b"\x01\x02") == flv.AacFrame(b"\x01\x02")


def test_hvcc_and_av1c_parsers_agree_with_ffmpeg() -> None:
    for codec in ("hevc", "av1"):
        start = _video(codec)[0]
        assert isinstance(start, flv.VideoSequenceStart)
        _, width, height = describe_hvcc(start.record) if codec == "hevc" else describe_av1c(start.record)
        assert (width, height) == (320, 180)


@pytest.mark.parametrize(("codec", "ffmpeg_name", "fourcc"), [("hevc", "hevc", "hvc1"), ("av1", "av1", "av01")])
def test_packaged_cmaf_reads_back_in_ffmpeg(codec: str, ffmpeg_name: str, fourcc: str) -> None:
    timeline = IngestTimeline()
    packager = CmafPackager(1000)
    out = []
    for ev in timeline.push([(kind, ts, body) for kind, ts, body in pyav_flv(codec) if kind in (VIDEO, AUDIO)]):
        if isinstance(ev, VideoConfig):
            out += packager.video_config(ev)
        elif isinstance(ev, VideoFrame):
            out += packager.video_frame(ev.dts_ms, ev.cts_ms, ev.keyframe, ev.data)
    out += packager.finish()
    init = next(o for o in out if isinstance(o, InitSegment))
    segments = [o for o in out if isinstance(o, MediaSegment) and o.rendition == "video"]
    assert len(segments) == 3 and init.codec == describe(packager.video_source or VideoConfig(b"")).codec_string
    with av.open(io.BytesIO(init.data + b"".join(s.data for s in segments))) as f:
        stream = f.streams.video[0]
        assert stream.codec_context.name in (ffmpeg_name, "libdav1d")
        assert stream.codec_tag == fourcc and (stream.width, stream.height) == (320, 180)
        assert sum(1 for _ in f.decode(stream)) == 90


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_the_ladder_decodes_it_into_h264_rungs(codec: str) -> None:
    settings = TranscodeSettings()
    renditions = {"180p": {"height": 180, "video_kbps": 300, "audio_kbps": 64}}
    ladder = LadderTranscoder(["source", "180p"], renditions, encoder="x264", preset=settings.preset)
    tags = _video(codec)
    start = tags[0]
    assert isinstance(start, flv.VideoSequenceStart)
    outputs = ladder.push([LadderConfig(VideoConfig(start.record, start.codec), 30.0, 150.0)])
    # A same-height H.264 rung for an HEVC/AV1 source, at twice its bitrate's worth.
    assert [r.name for r in ladder.planned] == ["180p"]
    dts = 0
    for tag in tags[1:]:
        if isinstance(tag, flv.CodedVideoFrame):
            outputs += ladder.push([LadderFrame(dts, tag.composition_time, tag.keyframe, tag.data, tag.keyframe)])
            dts += 33
    outputs += ladder.finish()
    inits = [o.output for o in outputs if isinstance(o.output, InitSegment)]
    segments = [o.output for o in outputs if isinstance(o.output, MediaSegment)]
    assert inits[0].codec.startswith("avc1.") and len(segments) == 3
    with av.open(io.BytesIO(inits[0].data + b"".join(s.data for s in segments))) as f:
        assert sum(1 for _ in f.decode(video=0)) == 90


@pytest.mark.parametrize("codec", ["hevc", "av1", "h264"])
def test_the_gateway_reads_each_frames_header_as_the_packager_does(codec: str) -> None:
    """The gateway flushes a part's last frame from the header alone (`frame_header`); its clock
    must cut where the packager's does, B-frames' composition times included."""
    tags = [(ts, body) for kind, ts, body in pyav_flv(codec) if kind == VIDEO]
    packager = CmafPackager(1000, part_ms=200)
    gateway = CutClock(1000, 200)
    cuts = 0
    for ts, body in tags:
        tag = flv.parse_video(body)
        header = flv.frame_header(body)
        if isinstance(tag, flv.VideoSequenceStart):
            packager.video_config(VideoConfig(tag.record, tag.codec))
        if not isinstance(tag, flv.CodedVideoFrame):
            assert header is None
            continue
        assert header == (tag.keyframe, tag.composition_time)
        before = packager.parts_started
        packager.video_frame(ts, tag.composition_time, tag.keyframe, tag.data)
        assert (gateway.starts(ts, *header) != Cut.NONE) == (packager.parts_started != before)
        cuts += packager.parts_started != before
    assert packager.segments_started == 3 and cuts > 10
