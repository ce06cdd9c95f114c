"""Property-based fuzzing of the RTMP parsers: any input ends in messages or a protocol error, never a crash."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raylive.runtime import flv
from raylive.runtime.ingest import IngestTimeline, UnsupportedMedia
from raylive.runtime.rtmp import amf0
from raylive.runtime.rtmp.chunk import ChunkError, ChunkLimits, ChunkReader
from raylive.runtime.rtmp.session import RtmpProtocolError, RtmpServerSession
from tests.helpers import ffmpeg_publish_bytes

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
