"""The asyncio RTMP server against hostile clients, with a stand-in authorizer (no Ray needed)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from raylive.runtime.rtmp import amf0
from raylive.runtime.rtmp.chunk import COMMAND_AMF0, VIDEO, WINDOW_ACK_SIZE, RtmpMessage, encode_message
from raylive.runtime.rtmp.server import PublishRefused, RtmpConnection, RtmpServer, RtmpServerConfig
from raylive.runtime.rtmp.session import PublishRequested, RtmpServerSession
from tests.helpers import ffmpeg_publish_bytes


class RecordingSink:
    def __init__(self) -> None:
        self.messages: list[RtmpMessage] = []
        self.closed: str | None = None

    async def send(self, messages: list[RtmpMessage]) -> None:
        self.messages += messages

    async def close(self, reason: str) -> None:
        self.closed = reason


class KeyAuthorizer:
    def __init__(self) -> None:
        self.sinks: list[RecordingSink] = []

    async def open(self, conn: RtmpConnection, app: str, stream_key: str, query: str = "") -> RecordingSink:
        if stream_key != "fixturekey":
            raise PublishRefused("NetStream.Publish.BadName", "invalid or revoked stream key")
        sink = RecordingSink()
        self.sinks.append(sink)
        return sink


async def _serve(cfg: RtmpServerConfig) -> tuple[RtmpServer, KeyAuthorizer, int]:
    auth = KeyAuthorizer()
    server = RtmpServer(auth, cfg)
    port = await server.start("127.0.0.1", 0)
    return server, auth, port


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(65536), seconds):
            pass
    except ConnectionResetError:  # closed with our bytes unread
        pass
    return time.monotonic() - started


async def _replay_publish(port: int) -> None:
    """Send the captured ffmpeg publish at once (the server answers are read and dropped)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(ffmpeg_publish_bytes())
    await writer.drain()
    writer.write_eof()
    while await reader.read(65536):
        pass
    writer.close()


@pytest.mark.timeout(60)
def test_silent_slow_and_garbage_clients_are_dropped_while_a_publisher_flows() -> None:
    async def scenario() -> None:
        server, auth, port = await _serve(RtmpServerConfig(handshake_timeout_s=1.0, idle_timeout_s=2.0))
        # A client that connects and sends nothing.
        silent_r, _silent_w = await asyncio.open_connection("127.0.0.1", port)
        # A slowloris client: one handshake byte per 0.3 s never completes within the timeout.
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)

        async def drip() -> None:
            for _ in range(20):
                slow_w.write(b"\x03")
                await asyncio.sleep(0.3)

        drip_task = asyncio.create_task(drip())
        # A client sending random bytes after a valid handshake.
        junk_r, junk_w = await asyncio.open_connection("127.0.0.1", port)
        junk_w.write(b"\x03" + bytes(1536) + bytes(1536) + b"\xff" * 64 + b"\x05\x00\x00\x00\xff\xff\xff\x14")
        # Meanwhile a real publish goes through.
        publish = asyncio.create_task(_replay_publish(port))
        assert await _closed_within(silent_r, 5) < 3
        assert await _closed_within(slow_r, 5) < 3
        assert await _closed_within(junk_r, 5) < 3
        await asyncio.wait_for(publish, 10)
        drip_task.cancel()
        [sink] = auth.sinks
        assert sink.closed == "unpublished" and len(sink.messages) > 50
        assert server.connections == {}
        await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_connection_limit_and_wrong_key() -> None:
    async def scenario() -> None:
        server, auth, port = await _serve(RtmpServerConfig(max_connections=2))
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0)  # let the server register them
        extra_r, _ = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_within(extra_r, 5) < 2  # refused at once, the two others stay
        for _, w in held:
            w.close()
        deadline = time.monotonic() + 5
        while server.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        # A wrong key: refused with the RTMP status, nothing forwarded.
        data = ffmpeg_publish_bytes().replace(b"fixturekey", b"wrong-key!")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        answer = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            answer += chunk
        assert b"NetStream.Publish.BadName" in answer and b"invalid or revoked stream key" in answer
        assert auth.sinks == []
        await server.stop()

    asyncio.run(scenario())


def _end_of_publish_command(data: bytes) -> int:
    """Where the capture's publish command ends: the server can accept the publish there."""
    session = RtmpServerSession()
    for end in range(1, len(data)):
        events = session.feed(data[end - 1 : end])
        session.data_to_send()
        if any(isinstance(e, PublishRequested) for e in events):
            return end
    raise AssertionError("no publish command in the capture")


class SlowAuthorizer(KeyAuthorizer):
    """A busy cluster: starting the stream's actor takes longer than the idle timeout."""

    async def open(self, conn: RtmpConnection, app: str, stream_key: str, query: str = "") -> RecordingSink:
        await asyncio.sleep(1.5)
        return await super().open(conn, app, stream_key)


@pytest.mark.timeout(30)
def test_a_slow_publish_authorization_does_not_count_as_client_idleness() -> None:
    async def scenario() -> None:
        auth = SlowAuthorizer()
        server = RtmpServer(auth, RtmpServerConfig(idle_timeout_s=0.5))
        port = await server.start("127.0.0.1", 0)
        data = ffmpeg_publish_bytes()
        split = _end_of_publish_command(data)  # up to the publish command; its media a moment later
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data[:split])
        await asyncio.sleep(0.2)
        writer.write(data[split:])
        await writer.drain()
        writer.write_eof()
        await _closed_within(reader, 10)
        [sink] = auth.sinks
        assert sink.closed == "unpublished" and len(sink.messages) > 50, (sink.closed, len(sink.messages))
        await server.stop()

    asyncio.run(scenario())


class SlowSink(RecordingSink):
    """A stream actor that takes 50 ms per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_bytes: list[int] = []

    async def send(self, messages: list[RtmpMessage]) -> None:
        self.batch_bytes.append(sum(len(m.payload) for m in messages))
        await asyncio.sleep(0.05)
        await super().send(messages)


class SlowSinkAuthorizer(KeyAuthorizer):
    async def open(self, conn: RtmpConnection, app: str, stream_key: str, query: str = "") -> RecordingSink:
        sink = SlowSink()
        self.sinks.append(sink)
        return sink


@pytest.mark.timeout(30)
def test_a_sink_that_falls_behind_pauses_reading_and_loses_nothing() -> None:
    frames = [b"\x17\x01\x00\x00\x00" + bytes([i]) * 200_000 for i in range(20)]  # 4 MB of video at once

    async def scenario() -> None:
        auth = SlowSinkAuthorizer()
        server = RtmpServer(auth, RtmpServerConfig(max_pending_bytes=256 << 10))
        port = await server.start("127.0.0.1", 0)
        data = ffmpeg_publish_bytes()
        split = _end_of_publish_command(data)
        media = b"".join(encode_message(7, VIDEO, 1, 40 * i, f, 4096) for i, f in enumerate(frames))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data[:split])
        answer = b""
        while b"NetStream.Publish.Start" not in answer:  # a stranger's limits end there
            answer += await asyncio.wait_for(reader.read(65536), 5)
        writer.write(media + data[split:])
        await writer.drain()
        writer.write_eof()
        await _closed_within(reader, 20)
        [sink] = auth.sinks
        assert isinstance(sink, SlowSink)
        assert [m.payload for m in sink.messages if len(m.payload) > 100_000] == frames  # all of it, in order
        assert sink.closed == "unpublished"
        # Reading stopped while the sink was behind: what waited for it stayed near the limit (one
        # read and one frame above it), not the 4 MB the peer had sent.
        assert max(sink.batch_bytes) < 1 << 20, sink.batch_bytes
        await server.stop()

    asyncio.run(scenario())


HANDSHAKE = b"\x03" + bytes(1536) + bytes(1536)


async def _connect_from(address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


@pytest.mark.timeout(30)
def test_a_stranger_must_ask_to_publish_in_time_and_one_address_holds_few_such_connections() -> None:
    async def scenario() -> None:
        cfg = RtmpServerConfig(idle_timeout_s=30, publish_timeout_s=1.0, max_unpublished_per_address=3)
        server, auth, port = await _serve(cfg)
        # Handshake, then a Window Acknowledgement Size every 0.3 s: never idle, never publishing.
        keeper_r, keeper_w = await _connect_from("127.0.0.2", port)
        keeper_w.write(HANDSHAKE)

        async def keep_alive() -> None:
            for _ in range(30):
                keeper_w.write(encode_message(2, WINDOW_ACK_SIZE, 0, 0, (2_500_000).to_bytes(4, "big")))
                await asyncio.sleep(0.3)

        alive = asyncio.create_task(keep_alive())
        assert 0.5 < await _closed_within(keeper_r, 5) < 2.5  # the publish deadline, not the 30 s idle timeout
        alive.cancel()
        # Three strangers from one address are held; a fourth is closed at once.
        held = [await _connect_from("127.0.0.3", port) for _ in range(3)]
        for _, w in held:
            w.write(HANDSHAKE)
        await asyncio.sleep(0.1)
        fourth_r, _ = await _connect_from("127.0.0.3", port)
        assert await _closed_within(fourth_r, 2) < 0.5
        assert server.ended["address limit"] == 1
        # A publisher from another address is not affected.
        await asyncio.wait_for(_replay_publish(port), 10)
        assert auth.sinks[-1].closed == "unpublished" and len(auth.sinks[-1].messages) > 50
        for r, _ in held:
            await _closed_within(r, 3)
        assert server.ended["publish timeout"] == 4
        await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_oversized_and_endless_commands_are_refused_without_stalling_a_publisher() -> None:
    async def scenario() -> None:
        server, auth, port = await _serve(RtmpServerConfig())
        gaps: list[float] = []

        async def ticker() -> None:  # how long the event loop is away
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        # An 8 MiB AMF0 command is refused at its header...
        big_r, big_w = await asyncio.open_connection("127.0.0.1", port)
        big_w.write(HANDSHAKE + encode_message(3, COMMAND_AMF0, 0, 0, b"\x05" * (8 << 20), 4096)[:65536])
        # ...and 8 KiB commands of nulls, the costliest AMF0, end after 32 of them.
        many_r, many_w = await asyncio.open_connection("127.0.0.1", port)
        many_w.write(HANDSHAKE + encode_message(3, COMMAND_AMF0, 0, 0, b"\x02\x00\x01x\x00" + bytes(8) + b"\x05" * 8000) * 100)
        publish = asyncio.create_task(_replay_publish(port))
        assert await _closed_within(big_r, 3) < 1
        assert await _closed_within(many_r, 3) < 1
        await asyncio.wait_for(publish, 10)
        tick.cancel()
        assert server.ended["protocol error"] == 2
        assert auth.sinks[0].closed == "unpublished"
        assert max(gaps) < 0.25, f"the event loop stalled {max(gaps) * 1000:.0f} ms"
        await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_publisher_that_does_not_read_our_answers_is_not_read_either() -> None:
    """Commands answered into a socket nobody reads would grow the server's send buffer without
    end: reading stops until the peer reads, and then every command is answered, nothing lost."""
    connect = encode_message(3, COMMAND_AMF0, 0, 0, amf0.encode("connect", 1.0, {"app": "live"}))
    batch = 2000
    cap = 20 << 20

    async def scenario() -> None:
        server, auth, port = await _serve(RtmpServerConfig())
        data = ffmpeg_publish_bytes()
        split = _end_of_publish_command(data)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # our answers pile up at the server
        sock.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(data[:split])
        answer = b""
        while b"NetStream.Publish.Start" not in answer:
            answer += await asyncio.wait_for(reader.read(65536), 5)
        sent = 0
        while sent * len(connect) < cap:
            writer.write(connect * batch)
            sent += batch
            try:
                await asyncio.wait_for(asyncio.shield(writer.drain()), 2)
            except TimeoutError:
                break  # the server no longer reads us
        assert sent * len(connect) < cap, "the server kept reading a peer that did not read its answers"
        answered, unread, success = 0, b"", b"NetConnection.Connect.Success"
        while answered < sent:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk, f"closed after {answered} of {sent} answers"
            unread += chunk
            answered += unread.count(success)
            unread = unread[unread.rfind(success) + len(success) :] if success in unread else unread[-len(success) :]
        await writer.drain()
        writer.write(data[split:])  # the publish goes on
        writer.write_eof()
        await _closed_within(reader, 10)
        assert auth.sinks[0].closed == "unpublished" and len(auth.sinks[0].messages) > 50
        await server.stop()

    asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_publishers_socket_is_read_at_most_once_per_read_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 small writes over ≈ 1.5 s come in ≈ 30 reads at 50 ms (each takes what arrived
    meanwhile), and deliver what the same publish sent at once does."""
    reads = 0
    take = RtmpConnection._take

    def counted(self: RtmpConnection, data: bytes) -> None:
        nonlocal reads
        reads += 1
        take(self, data)

    monkeypatch.setattr(RtmpConnection, "_take", counted)

    async def scenario() -> None:
        nonlocal reads
        server, auth, port = await _serve(RtmpServerConfig(read_interval_s=0.05))
        await asyncio.wait_for(_replay_publish(port), 10)  # at once: what is to be delivered
        data = ffmpeg_publish_bytes()
        split = _end_of_publish_command(data)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data[:split])
        answer = b""
        while b"NetStream.Publish.Start" not in answer:
            answer += await asyncio.wait_for(reader.read(65536), 5)
        media, reads, started = data[split:], 0, time.monotonic()
        step = -(-len(media) // 200)
        for i in range(0, len(media), step):
            writer.write(media[i : i + step])
            await asyncio.sleep(0.0075)
        writer.write_eof()
        await _closed_within(reader, 10)
        elapsed = time.monotonic() - started
        at_once, paced = auth.sinks
        assert paced.closed == "unpublished" and [m.payload for m in paced.messages] == [m.payload for m in at_once.messages]
        assert 10 <= reads <= elapsed / 0.05 + 5 and reads < 100, (reads, elapsed)  # not one per write (200 without)
        await server.stop()

    asyncio.run(scenario())
