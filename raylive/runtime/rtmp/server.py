"""asyncio RTMP server: sockets, timeouts and batching around `RtmpServerSession`.

What happens to a published stream is decided by a `PublishAuthorizer` (the gateway actor
supplies one backed by Redis and the per-stream actors); tests can stand in a simple one.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .. import flv
from ..packaging.cmaf import Cut, CutClock
from .chunk import VIDEO, ChunkError, ChunkLimits, RtmpMessage
from .session import MediaReceived, PublishRequested, RtmpProtocolError, RtmpServerSession, SessionEvent, Unpublished

log = logging.getLogger(__name__)


class PublishRefused(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class PublishSink(Protocol):
    async def send(self, messages: list[RtmpMessage]) -> None: ...

    async def close(self, reason: str) -> None: ...


class PublishAuthorizer(Protocol):
    async def open(self, conn: RtmpConnection, app: str, stream_key: str, query: str = "") -> PublishSink:
        """Return where the stream's media goes, or raise PublishRefused."""
        ...


@dataclass
class RtmpServerConfig:
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    flush_interval_s: float = 0.25
    max_pending_bytes: int = 32 << 20
    max_message_size: int = 16 << 20
    max_connections: int = 1000
    # Until it asks to publish a connection is a stranger: it gets this long (ffmpeg and OBS ask
    # within one round trip of the handshake) and one address may have this many at once.
    publish_timeout_s: float = 10.0
    max_unpublished_per_address: int = 16
    # The packager's cuts (`CutClock`): the media that closes a segment or a part goes at once, so
    # batching adds nothing to when a part is listed.
    segment_ms: int = 2000
    part_ms: int = 0


_conn_ids = itertools.count(1)


def _address(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


REFUSED_LOG_INTERVAL_S = 10.0
LISTEN_BACKLOG = 1024
READ_SIZE = 65536


class RtmpConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        authorizer: PublishAuthorizer,
        config: RtmpServerConfig,
    ) -> None:
        self.id = next(_conn_ids)
        self.peer = writer.get_extra_info("peername")
        self.address = _address(self.peer)
        self.stream_name = ""  # set by the authorizer; never the key
        self.publish_requested = False
        self._reader = reader
        self._writer = writer
        self._auth = authorizer
        self._cfg = config
        self._session = RtmpServerSession(ChunkLimits(max_message_size=config.max_message_size))
        self._sink: PublishSink | None = None
        self._pending: list[RtmpMessage] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._drained = asyncio.Event()
        self._closing = False
        self.stopped = False  # the server ended it (shutdown, kick): a deliberate end
        self.end_reason = ""  # why it ended (for the server's counters)
        self._refused = False
        self._clock = CutClock(config.segment_ms, config.part_ms)
        self._clock_started = False

    async def run(self) -> None:
        pump: asyncio.Task[None] | None = None
        reason = "peer closed"
        # Deadlines, not per-read timeouts: a client dripping a byte at a time (slowloris) must
        # still finish its handshake in time, and then complete a message every idle period.
        deadline = time.monotonic() + self._cfg.handshake_timeout_s
        publish_by = time.monotonic() + self._cfg.publish_timeout_s
        seen = 0
        try:
            while not self._closing:
                until = deadline if self.publish_requested else min(deadline, publish_by)
                try:
                    # A timer per read, not a task (`wait_for` made one per read: ≈ 100 a second per publisher).
                    async with asyncio.timeout_at(asyncio.get_running_loop().time() + max(0.0, until - time.monotonic())):
                        data = await self._reader.read(READ_SIZE)
                except TimeoutError:
                    if not self._session.handshake_done:
                        reason = "handshake timeout"
                    elif self.publish_requested or until < publish_by:
                        reason = "idle timeout"
                    else:
                        reason = "publish timeout"
                    log.info("rtmp conn %s %s: %s", self.id, self.peer, reason)
                    break
                if not data:
                    break
                was_open = self._session.handshake_done
                events = self._session.feed(data)
                if (self._session.handshake_done and not was_open) or self._session.messages_received > seen:
                    seen = self._session.messages_received
                    deadline = time.monotonic() + self._cfg.idle_timeout_s
                await self._flush_out()
                queue = deque(events)
                while queue:
                    ev = queue.popleft()
                    if isinstance(ev, MediaReceived):
                        msg = ev.message
                        self._pending.append(msg)
                        self._pending_bytes += len(msg.payload)
                        if msg.type_id == VIDEO and self._closes_a_part(msg.timestamp, msg.payload):
                            self._urgent.set()  # it closes a part or a segment: deliver it now
                    elif isinstance(ev, PublishRequested):
                        self.publish_requested = True
                        queue.extend(await self._on_publish(ev))
                        # Our own wait (a busy cluster starting the stream's actor can take longer
                        # than the idle timeout) is not the client's idleness.
                        deadline = max(deadline, time.monotonic() + self._cfg.idle_timeout_s)
                        if self._sink is not None and pump is None:
                            pump = asyncio.create_task(self._pump())
                    elif isinstance(ev, Unpublished):
                        reason = "unpublished"
                        self._closing = True
                if len(data) == READ_SIZE:
                    await asyncio.sleep(0)  # more is waiting: let the other connections have their turn first
                if self._pending:
                    self._wake.set()
                    if self._pending_bytes > self._cfg.max_pending_bytes:
                        self._drained.clear()
                        await self._drained.wait()  # backpressure: stop reading until the sink catches up
                        deadline = max(deadline, time.monotonic() + self._cfg.idle_timeout_s)
        except (RtmpProtocolError, ChunkError) as exc:
            reason = "protocol error"
            log.warning("rtmp conn %s %s: protocol error, closing: %s", self.id, self.peer, exc)
        except (ConnectionError, OSError) as exc:
            reason = "connection lost"
            log.info("rtmp conn %s %s: %s", self.id, self.peer, exc)
        finally:
            self._closing = True
            if pump is not None:
                self._wake.set()
                try:
                    await pump  # delivers what is already buffered: nothing received is lost
                except Exception:  # noqa: BLE001 - the sink already logged; we are closing anyway
                    log.exception("rtmp conn %s: final flush failed", self.id)
            if self._sink is not None:
                try:
                    await self._sink.close("stopped" if self.stopped else reason)
                except Exception:  # noqa: BLE001
                    log.exception("rtmp conn %s: sink close failed", self.id)
            self._writer.close()
            self.end_reason = "publish refused" if self._refused else reason

    def _closes_a_part(self, timestamp: int, payload: bytes) -> bool:
        """The same decision the stream's packager makes on this video message."""
        frame = flv.frame_header(payload)
        if frame is None:
            return False  # a sequence header, metadata or end of sequence: no frame
        keyframe, cts = frame
        if not (keyframe or self._clock_started):
            return False  # the packager skips frames before the first keyframe
        self._clock_started = True
        return self._clock.starts(timestamp, keyframe, cts) != Cut.NONE

    async def stop(self, description: str) -> None:
        """Server-initiated end (shutdown, revoked key): tell the publisher, then close."""
        self._session.end_publish(description)
        try:
            await self._flush_out()
        except (ConnectionError, OSError):
            pass  # the peer is already gone: closing is all that is left
        self._closing = True
        self.stopped = True
        # Closing the transport ends the pending read (EOF); media already received is still
        # delivered by the pump before the sink is closed.
        self._writer.close()

    async def _on_publish(self, ev: PublishRequested) -> list[SessionEvent]:
        try:
            self._sink = await self._auth.open(self, ev.app, ev.stream_key, ev.query)
        except PublishRefused as exc:
            log.info("rtmp conn %s %s: publish refused: %s", self.id, self.peer, exc.code)
            self._refused = True
            self._session.reject_publish(exc.code, exc.description)
            await self._flush_out()
            self._closing = True
            return []
        held = self._session.accept_publish()
        await self._flush_out()
        return held

    async def _flush_out(self) -> None:
        out = self._session.data_to_send()
        if out and not self._writer.is_closing():
            self._writer.write(out)
            await self._writer.drain()

    async def _pump(self) -> None:
        assert self._sink is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                batch, self._pending, self._pending_bytes = self._pending, [], 0
                started = time.monotonic()
                try:
                    await self._sink.send(batch)
                finally:
                    self._drained.set()  # never leave the reader waiting on a sink that failed
                # Coalesce: one actor call per flush interval per stream, sooner for a keyframe.
                elapsed = time.monotonic() - started
                if elapsed < self._cfg.flush_interval_s and not self._closing and not self._urgent.is_set():
                    try:
                        await asyncio.wait_for(self._urgent.wait(), self._cfg.flush_interval_s - elapsed)
                    except TimeoutError:
                        pass
                self._urgent.clear()
            elif self._closing:
                return
            if self._closing and not self._pending:
                return


class RtmpServer:
    def __init__(self, authorizer: PublishAuthorizer, config: RtmpServerConfig | None = None) -> None:
        self._auth = authorizer
        self._cfg = config or RtmpServerConfig()
        self._server: asyncio.AbstractServer | None = None
        self.connections: dict[int, RtmpConnection] = {}
        self._refused_unlogged = 0
        self._refused_logged_at = -REFUSED_LOG_INTERVAL_S
        # Connections ended, by reason ("publish refused", "protocol error", "idle timeout", ...,
        # "connection limit"): the gateway exports these as metrics.
        self.ended: collections.Counter[str] = collections.Counter()

    async def start(self, host: str, port: int) -> int:
        # asyncio's default backlog (100) overflows when many encoders reconnect at once (after a
        # network blip): the kernel then drops their SYNs and each waits 1 s to retry. nginx: 511.
        self._server = await asyncio.start_server(self._handle, host, port, backlog=LISTEN_BACKLOG)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self._cfg.max_connections:
            self._refuse(writer, "connection limit", f"connection limit {self._cfg.max_connections} reached")
            return
        address = _address(writer.get_extra_info("peername"))
        strangers = sum(1 for c in self.connections.values() if c.address == address and not c.publish_requested)
        if strangers >= self._cfg.max_unpublished_per_address:
            limit = self._cfg.max_unpublished_per_address
            self._refuse(writer, "address limit", f"{limit} connections from {address} have not published yet")
            return
        conn = RtmpConnection(reader, writer, self._auth, self._cfg)
        self.connections[conn.id] = conn
        try:
            await conn.run()
        finally:
            self.connections.pop(conn.id, None)
            self.ended[conn.end_reason or "connection lost"] += 1

    def _refuse(self, writer: asyncio.StreamWriter, reason: str, message: str) -> None:
        writer.close()
        self.ended[reason] += 1
        # One line per 10 s, not per connection: a flood must not turn into a log flood.
        self._refused_unlogged += 1
        if time.monotonic() - self._refused_logged_at >= REFUSED_LOG_INTERVAL_S:
            log.warning(
                "rtmp: %s: refused %d connection(s), the latest from %s", message, self._refused_unlogged, writer.get_extra_info("peername")
            )
            self._refused_unlogged, self._refused_logged_at = 0, time.monotonic()

    async def stop(self, description: str = "Server shutting down.") -> None:
        if self._server is not None:
            self._server.close()
        conns = list(self.connections.values())
        await asyncio.gather(*(c.stop(description) for c in conns), return_exceptions=True)
        deadline = time.monotonic() + 5
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
