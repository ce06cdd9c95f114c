"""Property-based fuzzing of the RTMP parsers: any input ends in messages or a protocol error, never a crash."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raylive.runtime import flv
from raylive.runtime.ingest import IngestTimeline, UnsupportedMedia
from raylive.runtime.media import VideoConfig
from raylive.runtime.rtmp import amf0
from raylive.runtime.rtmp.chunk import VIDEO, ChunkError, ChunkLimits, ChunkReader
from raylive.runtime.rtmp.session import RtmpProtocolError, RtmpServerSession
from raylive.runtime.video import VideoConfigError, describe
from tests.helpers import ffmpeg_publish_bytes, pyav_flv

EXPECTED = (ChunkError, RtmpProtocolError, amf0.Amf0Error)
CAPTURE = ffmpeg_publish_bytes()
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    """The real ffmpeg publish with a few bytes flipped, inserted or cut (seeded from a real capture)."""
    data = bytearray(CAPTURE[: draw(st.integers(3100, len(CAPTURE)))])
    for _ in range(draw(st.integers(1, 8))):
        if len(data) < 3100:
            break
        pos = draw(st.integers(3073, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_chunk_reader_random_bytes(data: bytes) -> None:
    try:
        ChunkReader(ChunkLimits(max_message_size=1 << 20)).feed(data)
    except ChunkError:
        pass


@FUZZ
@given(mutated_capture(), st.integers(1, 4096))
def test_session_survives_mutated_real_publish(data: bytes, step: int) -> None:
    session = RtmpServerSession(ChunkLimits(max_message_size=1 << 20))
    timeline = IngestTimeline()
    try:
        for i in range(0, len(data), step):
            pending = session.feed(data[i : i + step])
            while pending:
                ev = pending.pop(0)
                if type(ev).__name__ == "PublishRequested":
                    pending = session.accept_publish() + pending
                elif type(ev).__name__ == "MediaReceived":
                    m = ev.message  # type: ignore[union-attr]
                    try:
                        timeline.push([(m.type_id, m.timestamp, m.payload)])
                    except (UnsupportedMedia, flv.FlvError):
                        pass  # refused media: the gateway closes that publisher with the reason
            session.data_to_send()
    except EXPECTED:
        pass


@FUZZ
@given(st.binary(max_size=512))
def test_amf0_random_bytes(data: bytes) -> None:
    try:
        amf0.decode(data)
    except amf0.Amf0Error:
        pass


ENHANCED_PREFIXES = [b"", b"\x90hvc1", b"\x90av01", b"\x91hvc1", b"\x93hvc1", b"\x91av01", b"\x96", b"\x97", b"\x90", b"\x9f", b"\x27\x01"]


@FUZZ
@given(st.sampled_from(ENHANCED_PREFIXES), st.binary(max_size=256))
def test_flv_tags_and_codec_records_random_bytes(prefix: bytes, data: bytes) -> None:
    """Legacy and Enhanced RTMP tags (ModEx, multitrack, hvcC, av1C) end in a tag or a clear error."""
    body = prefix + data
    flv.frame_header(body)  # the gateway's read of every video message never raises
    _parse_or_clear_error(body)
    try:
        flv.parse_audio(body)
    except flv.FlvError:
        pass


def _parse_or_clear_error(body: bytes) -> None:
    """A video tag, and for a sequence start its record described, or FlvError / VideoConfigError."""
    try:
        tag = flv.parse_video(body)
        if isinstance(tag, flv.VideoSequenceStart):
            describe(VideoConfig(tag.record, tag.codec))
    except (flv.FlvError, VideoConfigError):
        pass


@FUZZ
@given(
    st.sampled_from(["hevc", "av1"]),
    st.integers(0, 3),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_mutated_hevc_and_av1_tags(codec: str, which: int, flips: list[tuple[int, int]]) -> None:
    """PyAV's real HEVC/AV1 sequence starts and frames with bytes flipped: a tag or a clear error."""
    body = bytearray([b for kind, _, b in pyav_flv(codec) if kind == VIDEO][which])
    for pos, bits in flips:
        body[pos % len(body)] ^= bits
    _parse_or_clear_error(bytes(body))
