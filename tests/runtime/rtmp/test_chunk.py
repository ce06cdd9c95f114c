import random

import pytest

from raylive.runtime.rtmp.chunk import (
    ABORT,
    AUDIO,
    BEFORE_PUBLISH_LIMITS,
    COMMAND_AMF0,
    SET_CHUNK_SIZE,
    VIDEO,
    ChunkError,
    ChunkLimits,
    ChunkReader,
    RtmpMessage,
    encode_message,
)
from tests.helpers import ffmpeg_publish_bytes, ffmpeg_publish_messages


def _key(m: RtmpMessage) -> tuple[int, int, int, bytes]:
    return (m.type_id, m.timestamp, m.stream_id, m.payload)


@pytest.mark.parametrize("chunk_size", [1, 128, 4096])
@pytest.mark.parametrize("csid", [3, 63, 64, 319, 320, 65599])
def test_encode_then_read_round_trip(chunk_size: int, csid: int) -> None:
    payload = bytes(range(256)) * 5
    reader = ChunkReader()
    reader.chunk_size = chunk_size
    wire = encode_message(csid, VIDEO, 1, 1234, payload, chunk_size)
    [msg] = reader.feed(wire)
    assert (msg.type_id, msg.timestamp, msg.stream_id, msg.payload, msg.csid) == (VIDEO, 1234, 1, payload, csid)


def test_extended_timestamp_is_repeated_on_continuation_chunks() -> None:
    ts = 0x01234567
    wire = encode_message(4, AUDIO, 1, ts, b"a" * 300, 128)
    assert wire.count(ts.to_bytes(4, "big")) == 3  # fmt 0 + two fmt-3 continuation chunks
    [msg] = ChunkReader().feed(wire)
    assert msg.timestamp == ts and msg.payload == b"a" * 300


def test_header_types_1_2_3_reuse_previous_fields() -> None:
    # fmt 0: ts 1000, len 3, video, stream 1
    wire = bytes([0x06]) + (1000).to_bytes(3, "big") + (3).to_bytes(3, "big") + bytes([VIDEO]) + (1).to_bytes(4, "little") + b"abc"
    # fmt 1: delta 40, len 2, audio (same stream)
    wire += bytes([0x46]) + (40).to_bytes(3, "big") + (2).to_bytes(3, "big") + bytes([AUDIO]) + b"de"
    # fmt 2: delta 33, same length and type
    wire += bytes([0x86]) + (33).to_bytes(3, "big") + b"fg"
    # fmt 3 starting a new message: same delta (33) again
    wire += bytes([0xC6]) + b"hi"
    msgs = ChunkReader().feed(wire)
    assert [_key(m) for m in msgs] == [
        (VIDEO, 1000, 1, b"abc"),
        (AUDIO, 1040, 1, b"de"),
        (AUDIO, 1073, 1, b"fg"),
        (AUDIO, 1106, 1, b"hi"),
    ]


def test_set_chunk_size_applies_to_the_following_chunks() -> None:
    reader = ChunkReader()
    wire = encode_message(2, SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big"))
    wire += encode_message(6, VIDEO, 1, 0, b"v" * 3000, 4096)
    msgs = reader.feed(wire)
    assert reader.chunk_size == 4096
    assert msgs[-1].payload == b"v" * 3000


def test_abort_discards_the_partial_message() -> None:
    reader = ChunkReader()
    partial = encode_message(6, VIDEO, 1, 0, b"x" * 200, 128)[: 12 + 128]  # first chunk only
    abort = encode_message(2, ABORT, 0, 0, (6).to_bytes(4, "big"))
    after = encode_message(6, VIDEO, 1, 10, b"ok", 128)
    msgs = reader.feed(partial + abort + after)
    assert [m.payload for m in msgs if m.type_id == VIDEO] == [b"ok"]


def test_limits_and_protocol_violations() -> None:
    with pytest.raises(ChunkError, match="exceeds limit"):
        ChunkReader(ChunkLimits(max_message_size=1000)).feed(encode_message(6, VIDEO, 1, 0, b"x" * 2000, 4096))
    with pytest.raises(ChunkError, match="starts with fmt"):
        ChunkReader().feed(bytes([0x46]) + bytes(7))
    with pytest.raises(ChunkError, match="chunk size"):
        ChunkReader().feed(encode_message(2, SET_CHUNK_SIZE, 0, 0, (0).to_bytes(4, "big")))


def test_a_command_larger_than_the_command_limit_is_refused_at_its_header() -> None:
    reader = ChunkReader()
    header = encode_message(3, COMMAND_AMF0, 0, 0, b"x" * (8 << 20), 128)[:12]  # 8 MiB declared
    with pytest.raises(ChunkError, match="type 20"):
        reader.feed(header)
    assert reader.buffered == 12  # nothing of the payload was taken in


def test_before_publish_a_stranger_gets_few_chunk_streams_and_little_buffer() -> None:
    reader = ChunkReader(BEFORE_PUBLISH_LIMITS)
    # ffmpeg's whole publish (chunk streams 2..8) parses under the before-publish limits...
    assert len(ChunkReader(BEFORE_PUBLISH_LIMITS).feed(ffmpeg_publish_bytes()[1 + 2 * 1536 :])) > 10
    # ...but incomplete media on many chunk streams does not pile up.
    with pytest.raises(ChunkError, match="incomplete messages"):
        for csid in range(2, 9):
            reader.feed(encode_message(csid, VIDEO, 1, 0, bytes(1 << 20), 128)[: 12 + 128])  # first chunk of 1 MiB
        for _ in range(1000):
            for csid in range(2, 9):
                reader.feed(bytes([0xC0 | csid]) + bytes(128))  # a continuation chunk
    assert reader._partial_bytes <= BEFORE_PUBLISH_LIMITS.max_partial_bytes
    with pytest.raises(ChunkError, match="more than 8 chunk streams"):
        many = ChunkReader(BEFORE_PUBLISH_LIMITS)
        for csid in range(2, 12):
            many.feed(encode_message(csid, AUDIO, 1, 0, b"a"))
    # Once publishing, the limits are the publisher's: a 4 MiB keyframe passes.
    reader = ChunkReader(BEFORE_PUBLISH_LIMITS)
    reader.limits = ChunkLimits()
    assert reader.feed(encode_message(6, VIDEO, 1, 0, bytes(4 << 20), 128))[0].payload == bytes(4 << 20)


def test_captured_ffmpeg_publish_parses_identically_in_any_split() -> None:
    expected = [_key(m) for m in ffmpeg_publish_messages()]
    types = {m[0] for m in expected}
    assert {SET_CHUNK_SIZE, 20, 18, AUDIO, VIDEO} <= types  # chunk size, commands, metadata, media
    data = ffmpeg_publish_bytes()[1 + 2 * 1536 :]
    rng = random.Random(7)
    for _ in range(3):
        reader, got, pos = ChunkReader(), [], 0
        while pos < len(data):
            n = rng.randint(1, 700)
            got += [_key(m) for m in reader.feed(data[pos : pos + n])]
            pos += n
        assert got == expected
        assert reader.buffered == 0
