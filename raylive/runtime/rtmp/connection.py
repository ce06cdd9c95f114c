"""One RTMP connection on the server: deadlines, publish authorization, reading held while
something waits, and batched delivery of its media to a `PublishSink`."""

from __future__ import annotations

import asyncio
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
    # A publisher's socket is read at most once per this interval, what arrived meanwhile in one
    # read: a 720p publisher's ≈ 105 reads a second, each a loop wake-up, a recv and a Python call,
    # were most of the server's CPU (benchmarks/rtmp_server.py, 10 streams: 0.72 → 0.41 % of a core
    # per stream at 50 ms, 0.34 at 100 ms). It delays media by at most this much.
    read_interval_s: float = 0.05


_conn_ids = itertools.count(1)


def address_of(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class RtmpConnection:
    def __init__(self, transport: asyncio.Transport, authorizer: PublishAuthorizer, config: RtmpServerConfig) -> None:
        self.id = next(_conn_ids)
        self.peer = transport.get_extra_info("peername")
        self.address = address_of(self.peer)
        self.stream_name = ""  # set by the authorizer; never the key
        self.publish_requested = False
        self._transport = transport
        self._auth = authorizer
        self._cfg = config
        self._session = RtmpServerSession(ChunkLimits(max_message_size=config.max_message_size))
        self._sink: PublishSink | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._publish_task: asyncio.Task[None] | None = None
        self._pending: list[RtmpMessage] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._closing = False
        self.stopped = False  # the server ended it (shutdown, kick): a deliberate end
        self.end_reason = ""  # why it ended (for the server's counters)
        self._reason = "peer closed"
        self._refused = False
        self._clock = CutClock(config.segment_ms, config.part_ms)
        self._clock_started = False
        # Reading stops while a publish is being authorized, the sink is behind or the peer does
        # not read: what arrives meanwhile waits here, in order (nothing received is lost).
        self._holds: set[str] = set()
        self._inbox: deque[bytes] = deque()
        self._gone = ""  # the peer closed while reading was held: end once the inbox is handled
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Deadlines, not per-read timeouts: a client dripping a byte at a time (slowloris) must
        # still finish its handshake in time, and then complete a message every idle period.
        # One timer per connection, moved only when it fires.
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + config.handshake_timeout_s
        self._publish_by = loop.time() + config.publish_timeout_s
        self._seen = 0
        self._timer = loop.call_at(min(self._deadline, self._publish_by), self._check_deadline)

    async def run(self) -> None:
        """Until the connection ends; then what was received is delivered and the sink closed."""
        try:
            await self._done
        finally:
            self._closing = True
            self._timer.cancel()
            if self._publish_task is not None:
                # Never cut an authorization short: a claimed stream must be released.
                await asyncio.gather(self._publish_task, return_exceptions=True)
            if self._pump_task is not None:
                self._wake.set()
                try:
                    await self._pump_task  # delivers what is already buffered: nothing received is lost
                except Exception:  # noqa: BLE001 - the sink already logged; we are closing anyway
                    log.exception("rtmp conn %s: final flush failed", self.id)
            if self._sink is not None:
                try:
                    await self._sink.close("stopped" if self.stopped else self._reason)
                except Exception:  # noqa: BLE001
                    log.exception("rtmp conn %s: sink close failed", self.id)
            self._transport.close()
            self.end_reason = "publish refused" if self._refused else self._reason

    def _end(self, reason: str) -> None:
        if not self._done.done():
            self._reason = reason
            self._closing = True
            self._done.set_result(None)

    def _check_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        if self._holds - {"writing", "pace"}:
            # Our own wait (a busy cluster starting the stream's actor can take longer than the
            # idle timeout, a sink catching up) is not the client's idleness.
            self._deadline = max(self._deadline, loop.time() + self._cfg.idle_timeout_s)
        until = self._deadline if self.publish_requested else min(self._deadline, self._publish_by)
        if loop.time() < until:
            self._timer = loop.call_at(until, self._check_deadline)
            return
        if not self._session.handshake_done:
            reason = "handshake timeout"
        elif self.publish_requested or until < self._publish_by:
            reason = "idle timeout"
        else:
            reason = "publish timeout"
        log.info("rtmp conn %s %s: %s", self.id, self.peer, reason)
        self._end(reason)

    @property
    def ending(self) -> bool:
        """The connection is over; what it received is still being delivered and its sink closed."""
        return self._closing

    # -- reading ---------------------------------------------------------------------------
    def received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._holds or self._inbox:
            self._inbox.append(data)
            return
        self._take(data)
        if self._sink is not None and self._cfg.read_interval_s and not self._closing:
            self.hold("pace")
            asyncio.get_running_loop().call_later(self._cfg.read_interval_s, self.release, "pace")

    def lost(self, reason: str) -> None:
        """The peer closed (or the connection broke): what it sent before still counts."""
        self._gone = self._gone or reason
        self._holds.discard("writing")
        self._resume()

    def hold(self, why: str) -> None:
        if not self._holds and not self._transport.is_closing():
            self._transport.pause_reading()
        self._holds.add(why)

    def release(self, why: str) -> None:
        if why in self._holds:
            self._holds.discard(why)
            self._resume()

    def _resume(self) -> None:
        while self._inbox and not self._holds and not self._closing:
            self._take(self._inbox.popleft())
        if self._holds or self._closing:
            return
        if self._gone:
            self._end(self._gone)
        elif not self._transport.is_closing():
            self._transport.resume_reading()

    def _take(self, data: bytes) -> None:
        was_open = self._session.handshake_done
        try:
            events = self._session.feed(data)
        except (RtmpProtocolError, ChunkError) as exc:
            log.warning("rtmp conn %s %s: protocol error, closing: %s", self.id, self.peer, exc)
            self._end("protocol error")
            return
        if (self._session.handshake_done and not was_open) or self._session.messages_received > self._seen:
            self._seen = self._session.messages_received
            self._deadline = asyncio.get_running_loop().time() + self._cfg.idle_timeout_s
        self._flush_out()
        self._handle(deque(events))

    def _handle(self, queue: deque[SessionEvent]) -> None:
        while queue and not self._closing:
            ev = queue.popleft()
            if isinstance(ev, MediaReceived):
                msg = ev.message
                self._pending.append(msg)
                self._pending_bytes += len(msg.payload)
                if msg.type_id == VIDEO and self._closes_a_part(msg.timestamp, msg.payload):
                    self._urgent.set()  # it closes a part or a segment: deliver it now
            elif isinstance(ev, PublishRequested):
                self.publish_requested = True
                self.hold("publish")
                self._publish_task = asyncio.get_running_loop().create_task(self._publish(ev, queue))
                return  # the rest of this read waits for the decision
            elif isinstance(ev, Unpublished):
                self._end("unpublished")
        if self._pending:
            self._wake.set()
            if self._pending_bytes > self._cfg.max_pending_bytes:
                self.hold("sink")  # backpressure: stop reading until the sink catches up

    async def _publish(self, ev: PublishRequested, rest: deque[SessionEvent]) -> None:
        try:
            self._sink = await self._auth.open(self, ev.app, ev.stream_key, ev.query)
        except PublishRefused as exc:
            log.info("rtmp conn %s %s: publish refused: %s", self.id, self.peer, exc.code)
            self._refused = True
            self._session.reject_publish(exc.code, exc.description)
            self._flush_out()
            self._end(self._reason)
            return
        except Exception:  # noqa: BLE001 - an authorizer's bug ends this connection, not the server
            log.exception("rtmp conn %s: publish failed", self.id)
            self._end("connection lost")
            return
        rest.extend(self._session.accept_publish())
        self._flush_out()
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        self._handle(rest)
        self.release("publish")

    def _flush_out(self) -> None:
        out = self._session.data_to_send()
        if out and not self._transport.is_closing():
            self._transport.write(out)

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

    def stop(self, description: str) -> None:
        """Server-initiated end (shutdown, revoked key): tell the publisher, then close."""
        self._session.end_publish(description)
        self._flush_out()
        self.stopped = True
        # Media already received is still delivered by the pump before the sink is closed.
        self._end(self._reason)

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
                    self.release("sink")  # never leave the reader waiting on a sink that failed
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
