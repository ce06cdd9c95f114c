"""asyncio RTMP server: accepts connections (within the connection and per-address limits) and
runs each as an `RtmpConnection` around the sans-IO `RtmpServerSession`.

What happens to a published stream is decided by a `PublishAuthorizer` (the gateway actor
supplies one backed by Redis and the per-stream actors); tests can stand in a simple one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import cast

from .connection import PublishAuthorizer, PublishRefused, PublishSink, RtmpConnection, RtmpServerConfig, address_of

__all__ = ["PublishAuthorizer", "PublishRefused", "PublishSink", "RtmpConnection", "RtmpServer", "RtmpServerConfig"]

log = logging.getLogger(__name__)

REFUSED_LOG_INTERVAL_S = 10.0
LISTEN_BACKLOG = 1024


class _Reader(asyncio.Protocol):
    """Hands each read straight to its connection. A StreamReader, with a future and a timer for
    every read (≈ 105 a second per 720p publisher), cost 0.82 % of a core per stream; this 0.47
    (the RTMP server alone, uvloop, 10 real-time 720p ffmpeg publishers)."""

    def __init__(self, server: RtmpServer) -> None:
        self._server = server
        self._conn: RtmpConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn = self._server._accept(cast(asyncio.Transport, transport))  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._conn.received(data)

    def eof_received(self) -> bool:
        if self._conn is not None:
            self._conn.lost("peer closed")
        return True  # half-closed: the connection closes the transport once it has ended

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._conn.lost("peer closed" if exc is None else "connection lost")

    def pause_writing(self) -> None:
        if self._conn is not None:
            self._conn.hold("writing")  # a peer that does not read what we send is not read either

    def resume_writing(self) -> None:
        if self._conn is not None:
            self._conn.release("writing")


class RtmpServer:
    def __init__(self, authorizer: PublishAuthorizer, config: RtmpServerConfig | None = None) -> None:
        self._auth = authorizer
        self._cfg = config or RtmpServerConfig()
        self._server: asyncio.AbstractServer | None = None
        self.connections: dict[int, RtmpConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused_unlogged = 0
        self._refused_logged_at = -REFUSED_LOG_INTERVAL_S
        # Connections ended, by reason ("publish refused", "protocol error", "idle timeout", ...,
        # "connection limit"): the gateway exports these as metrics.
        self.ended: collections.Counter[str] = collections.Counter()

    async def start(self, host: str, port: int) -> int:
        # asyncio's default backlog (100) overflows when many encoders reconnect at once (after a
        # network blip): the kernel then drops their SYNs and each waits 1 s to retry. nginx: 511.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Reader(self), host, port, backlog=LISTEN_BACKLOG)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    def _accept(self, transport: asyncio.Transport) -> RtmpConnection | None:
        if len(self.connections) >= self._cfg.max_connections:
            self._refuse(transport, "connection limit", f"connection limit {self._cfg.max_connections} reached")
            return None
        address = address_of(transport.get_extra_info("peername"))
        strangers = sum(1 for c in self.connections.values() if c.address == address and not c.publish_requested)
        if strangers >= self._cfg.max_unpublished_per_address:
            limit = self._cfg.max_unpublished_per_address
            self._refuse(transport, "address limit", f"{limit} connections from {address} have not published yet")
            return None
        conn = RtmpConnection(transport, self._auth, self._cfg)
        self.connections[conn.id] = conn
        task = asyncio.get_running_loop().create_task(self._run(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _run(self, conn: RtmpConnection) -> None:
        try:
            await conn.run()
        finally:
            self.connections.pop(conn.id, None)
            self.ended[conn.end_reason or "connection lost"] += 1

    def _refuse(self, transport: asyncio.Transport, reason: str, message: str) -> None:
        transport.close()
        self.ended[reason] += 1
        # One line per 10 s, not per connection: a flood must not turn into a log flood.
        self._refused_unlogged += 1
        if time.monotonic() - self._refused_logged_at >= REFUSED_LOG_INTERVAL_S:
            log.warning(
                "rtmp: %s: refused %d connection(s), the latest from %s",
                message,
                self._refused_unlogged,
                transport.get_extra_info("peername"),
            )
            self._refused_unlogged, self._refused_logged_at = 0, time.monotonic()

    async def stop(self, description: str = "Server shutting down.") -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.stop(description)
        deadline = time.monotonic() + 5
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
