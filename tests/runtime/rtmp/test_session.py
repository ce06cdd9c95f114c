from raylive.runtime.rtmp import amf0
from raylive.runtime.rtmp.chunk import AUDIO, COMMAND_AMF0, VIDEO, ChunkReader, encode_message
from raylive.runtime.rtmp.session import (
    HANDSHAKE_SIZE,
    MediaReceived,
    PublishRequested,
    RtmpServerSession,
    Unpublished,
)
from tests.helpers import ffmpeg_publish_bytes


def _commands(out: bytes, reader: ChunkReader) -> list[list[object]]:
    return [amf0.decode(m.payload) for m in reader.feed(out) if m.type_id == COMMAND_AMF0]


def _replay(accept: bool) -> tuple[RtmpServerSession, list[object], list[list[object]]]:
    data = ffmpeg_publish_bytes()
    session = RtmpServerSession()
    events: list[object] = []
    replies = ChunkReader()
    commands: list[list[object]] = []
    s0s1s2 = b""
    for i in range(0, len(data), 1000):
        pending = session.feed(data[i : i + 1000])
        while pending:
            ev = pending.pop(0)
            events.append(ev)
            if isinstance(ev, PublishRequested):
                if accept:
                    pending = session.accept_publish() + pending
                else:
                    session.reject_publish("NetStream.Publish.BadName", "nope")
        out = session.data_to_send()
        if not s0s1s2 and out:
            s0s1s2, out = out[: 1 + 2 * HANDSHAKE_SIZE], out[1 + 2 * HANDSHAKE_SIZE :]
            assert s0s1s2[0] == 3 and s0s1s2[1 + HANDSHAKE_SIZE :] == data[1 : 1 + HANDSHAKE_SIZE]  # S2 echoes C1
        commands += _commands(out, replies)
    return session, events, commands


def test_replayed_ffmpeg_publish_yields_publish_media_and_unpublish() -> None:
    session, events, commands = _replay(accept=True)
    publishes = [e for e in events if isinstance(e, PublishRequested)]
    assert publishes == [PublishRequested("fixturekey", "live", "live")]
    media = [e.message for e in events if isinstance(e, MediaReceived)]
    assert {m.type_id for m in media} >= {AUDIO, VIDEO}
    assert isinstance(events[-1], Unpublished)
    names = [c[0] for c in commands]
    assert names[0] == "_result" and commands[0][3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]
    status = [c[3] for c in commands if c[0] == "onStatus"]
    assert status[0]["code"] == "NetStream.Publish.Start"  # type: ignore[index]


def test_rejected_publish_sends_error_status_and_forwards_no_media() -> None:
    _, events, commands = _replay(accept=False)
    assert not any(isinstance(e, MediaReceived) for e in events)
    status = [c[3] for c in commands if c[0] == "onStatus"]
    assert status == [{"level": "error", "code": "NetStream.Publish.BadName", "description": "nope"}]


def test_wrong_version_and_garbage_are_protocol_errors() -> None:
    import pytest

    from raylive.runtime.rtmp.session import RtmpProtocolError

    with pytest.raises(RtmpProtocolError):
        RtmpServerSession().feed(b"\x06" + bytes(HANDSHAKE_SIZE))
    s = RtmpServerSession()
    s.feed(b"\x03" + bytes(HANDSHAKE_SIZE) + bytes(HANDSHAKE_SIZE))
    assert s.handshake_done
    with pytest.raises(RtmpProtocolError):  # a command that is not AMF0
        from raylive.runtime.rtmp.chunk import encode_message

        s.feed(encode_message(3, COMMAND_AMF0, 0, 0, b"\x02\x00\x09publ"))


def test_media_pipelined_behind_publish_waits_for_the_decision_and_is_not_lost() -> None:
    data = ffmpeg_publish_bytes()
    session = RtmpServerSession()
    events = session.feed(data)  # everything in one read: publish, then all media, then unpublish
    assert isinstance(events[-1], PublishRequested)
    held = session.accept_publish()
    media = [e for e in held if isinstance(e, MediaReceived)]
    _, one_by_one, _ = _replay(accept=True)
    assert len(media) == sum(isinstance(e, MediaReceived) for e in one_by_one)
    assert isinstance(held[-1], Unpublished)


def test_an_enhanced_rtmp_client_hears_which_fourccs_the_server_takes() -> None:
    """OBS 30+ lists the codecs it could send in `connect` (E-RTMP `fourCcList`); the server answers
    with those it packages. A legacy client's `_result` stays as it was."""

    for client, expected in ((["hvc1", "av01", "vp09"], ["avc1", "hvc1", "av01"]), (None, None)):
        session = RtmpServerSession()
        session.feed(bytes([3]) + bytes(HANDSHAKE_SIZE))
        session.feed(bytes(HANDSHAKE_SIZE))  # C2
        props: dict[str, object] = {"app": "live", "tcUrl": "rtmp://localhost/live"}
        if client:
            props["fourCcList"] = client
        session.feed(encode_message(3, COMMAND_AMF0, 0, 0, amf0.encode("connect", 1.0, props)))
        out = session.data_to_send()[1 + 2 * HANDSHAKE_SIZE :]
        result = _commands(out, ChunkReader())[0]
        assert result[0] == "_result" and result[2].get("fourCcList") == expected  # type: ignore[union-attr]
