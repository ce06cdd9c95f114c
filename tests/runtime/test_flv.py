from raylive.runtime import flv
from raylive.runtime.aac import parse_audio_specific_config
from raylive.runtime.avc import parse_avcc, sps_from_avcc
from raylive.runtime.rtmp.chunk import AUDIO, VIDEO
from tests.helpers import ffmpeg_publish_messages


def _tags() -> tuple[list[flv.VideoTag], list[flv.AudioTag]]:
    msgs = ffmpeg_publish_messages()
    return [flv.parse_video(m.payload) for m in msgs if m.type_id == VIDEO], [
        flv.parse_audio(m.payload) for m in msgs if m.type_id == AUDIO
    ]


def test_avc_sequence_header_then_keyframe_then_frames() -> None:
    video, _ = _tags()
    assert isinstance(video[0], flv.VideoSequenceStart)
    frames = [t for t in video if isinstance(t, flv.CodedVideoFrame)]
    assert frames[0].keyframe and sum(f.keyframe for f in frames) >= 2  # GOP of 15 at 15 fps, 1.5 s
    length_size, sps, pps = parse_avcc(video[0].record)
    assert length_size == 4 and len(sps) == 1 and len(pps) == 1
    # AVCC framing: the first NALU length fits inside the frame
    n = int.from_bytes(frames[0].data[:4], "big")
    assert 0 < n <= len(frames[0].data) - 4


def test_sps_gives_dimensions_and_codec_string() -> None:
    video, _ = _tags()
    assert isinstance(video[0], flv.VideoSequenceStart)
    info = sps_from_avcc(video[0].record)
    assert (info.width, info.height) == (160, 96)
    assert info.codec_string.startswith("avc1.42")  # ultrafast -> constrained baseline


def test_aac_config_and_frames() -> None:
    _, audio = _tags()
    assert isinstance(audio[0], flv.AacConfig)
    info = parse_audio_specific_config(audio[0].audio_specific_config)
    assert (info.object_type, info.sample_rate, info.channels) == (2, 22050, 1)
    assert info.codec_string == "mp4a.40.2"
    assert all(isinstance(t, flv.AacFrame) for t in audio[1:])


def test_other_codecs_are_reported_not_crashed() -> None:
    assert flv.parse_video(bytes([0x12, 0, 0])) == flv.UnsupportedCodec("video", "Sorenson H.263")
    assert flv.parse_video(bytes([0x90]) + b"vp09" + bytes(8)) == flv.UnsupportedCodec("video", "enhanced-RTMP vp09")
    assert flv.parse_audio(bytes([0x90]) + b"Opus" + bytes(8)) == flv.UnsupportedCodec("audio", "enhanced-RTMP Opus")
    assert flv.parse_audio(bytes([0x2F, 0])) == flv.Mp3Frame(b"\x00")  # re-encoded to AAC on ingest
    assert flv.parse_audio(bytes([0xBF, 0])) == flv.UnsupportedCodec("audio", "Speex")
    assert isinstance(flv.parse_video(b""), flv.Ignored)


def test_composition_time_is_signed() -> None:
    tag = flv.parse_video(bytes([0x27, 1, 0xFF, 0xFF, 0xFE]) + b"\x00\x00\x00\x01\x41")
    assert isinstance(tag, flv.CodedVideoFrame) and tag.composition_time == -2 and not tag.keyframe
