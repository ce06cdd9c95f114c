"""Server side of one RTMP connection as a sans-IO state machine.

`RtmpServerSession.feed(bytes)` returns events (publish requests, media messages, unpublish);
bytes to send back accumulate and are taken with `data_to_send()`. Authorization is the
caller's job: on `PublishRequested` it calls `accept_publish()` or `reject_publish()`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..flv import VIDEO_FOURCCS
from . import amf0
from .chunk import (
    ACKNOWLEDGEMENT,
    AUDIO,
    BEFORE_PUBLISH_LIMITS,
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    DATA_AMF3,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkLimits,
    ChunkReader,
    RtmpMessage,
    encode_message,
)

log = logging.getLogger(__name__)

HANDSHAKE_SIZE = 1536
RTMP_VERSION = 3
OUT_CHUNK_SIZE = 4096
WINDOW_ACK = 2_500_000
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_STATUS = 5
# ffmpeg sends 5 commands before publishing and OBS 6: a stranger gets a few more, not a stream
# of them to decode (each up to ChunkLimits.max_command_size).
MAX_COMMANDS_BEFORE_PUBLISH = 32


class RtmpProtocolError(ValueError):
    """The peer broke the protocol; the connection should be closed."""


@dataclass(slots=True)
class PublishRequested:
    stream_key: str
    app: str
    publish_type: str
    query: str = ""  # what followed the key after `?` (`rtmp://host/live/KEY?a=b`), for admission hooks


@dataclass(slots=True)
class MediaReceived:
    message: RtmpMessage


@dataclass(slots=True)
class Unpublished:
    reason: str


SessionEvent = PublishRequested | MediaReceived | Unpublished


class RtmpServerSession:
    def __init__(self, limits: ChunkLimits | None = None, before_publish: ChunkLimits = BEFORE_PUBLISH_LIMITS) -> None:
        """`limits` apply once a publish is accepted; until then the stranger gets `before_publish`."""
        self._state = "c0c1"
        self._hs = bytearray()
        self._out = bytearray()
        self._limits = limits or ChunkLimits()
        self._reader = ChunkReader(before_publish)
        self._held: deque[RtmpMessage] = deque()
        self._peer_window = 0
        self._last_ack = 0
        self.app = ""
        self.tc_url = ""
        self.publish_stream_id = 0
        self.publishing = False
        self._publish_pending = False
        self._next_stream_id = 1
        self._commands_before_publish = 0

    # -- public API ---------------------------------------------------------------------
    @property
    def handshake_done(self) -> bool:
        return self._state == "open"

    @property
    def messages_received(self) -> int:
        return self._reader.messages_received

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def feed(self, data: bytes) -> list[SessionEvent]:
        if self._state != "open":
            data = self._feed_handshake(data)
            if self._state != "open" or not data:
                return []
        self._held.extend(self._reader.feed(data))
        self._maybe_ack()
        return self._process_held()

    def _process_held(self) -> list[SessionEvent]:
        events: list[SessionEvent] = []
        # While a publish awaits the caller's decision, later messages wait too: a client that
        # pipelines media right behind its publish command must not lose it.
        while self._held and not self._publish_pending:
            self._on_message(self._held.popleft(), events)
        return events

    def accept_publish(self) -> list[SessionEvent]:
        """Start the publish; returns the events of messages that arrived while it was pending."""
        self._publish_pending = False
        self.publishing = True
        self._reader.limits = self._limits
        self._send(CSID_CONTROL, USER_CONTROL, 0, (0).to_bytes(2, "big") + self.publish_stream_id.to_bytes(4, "big"))
        self._on_status("status", "NetStream.Publish.Start", "Publishing started.")
        return self._process_held()

    def reject_publish(self, code: str, description: str) -> None:
        self._publish_pending = False
        self._held.clear()
        self._on_status("error", code, description)

    def end_publish(self, description: str = "Stream ended by server.") -> None:
        """Tell a publisher we are stopping (shutdown, revoke); the caller then closes."""
        if self.publishing:
            self._on_status("status", "NetStream.Unpublish.Success", description)
            self.publishing = False

    # -- handshake ----------------------------------------------------------------------
    def _feed_handshake(self, data: bytes) -> bytes:
        self._hs += data
        if self._state == "c0c1":
            if len(self._hs) < 1 + HANDSHAKE_SIZE:
                return b""
            if self._hs[0] != RTMP_VERSION:
                raise RtmpProtocolError(f"unsupported RTMP version {self._hs[0]} in C0")
            c1 = bytes(self._hs[1 : 1 + HANDSHAKE_SIZE])
            del self._hs[: 1 + HANDSHAKE_SIZE]
            # Simple handshake: S1 = time, zero, random; S2 echoes C1. ffmpeg and OBS accept it
            # for publishing (clients only verify the digest form when they play).
            s1 = (int(time.monotonic() * 1000) & 0xFFFFFFFF).to_bytes(4, "big") + bytes(4) + os.urandom(1528)
            self._out += bytes((RTMP_VERSION,)) + s1 + c1
            self._state = "c2"
        if self._state == "c2":
            if len(self._hs) < HANDSHAKE_SIZE:
                return b""
            rest = bytes(self._hs[HANDSHAKE_SIZE:])
            self._hs = bytearray()
            self._state = "open"
            return rest
        return b""

    # -- messages -----------------------------------------------------------------------
    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes, timestamp: int = 0) -> None:
        self._out += encode_message(csid, type_id, stream_id, timestamp, payload, OUT_CHUNK_SIZE)

    def _send_command(self, stream_id: int, *values: Any) -> None:
        self._send(CSID_COMMAND if stream_id == 0 else CSID_STATUS, COMMAND_AMF0, stream_id, amf0.encode(*values))

    def _on_status(self, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._send_command(self.publish_stream_id, "onStatus", 0, None, info)

    def _maybe_ack(self) -> None:
        received = self._reader.bytes_received
        if self._peer_window and received - self._last_ack >= self._peer_window:
            self._last_ack = received
            self._send(CSID_CONTROL, ACKNOWLEDGEMENT, 0, (received & 0xFFFFFFFF).to_bytes(4, "big"))

    def _on_message(self, msg: RtmpMessage, events: list[SessionEvent]) -> None:
        t = msg.type_id
        if t in (AUDIO, VIDEO, DATA_AMF0, DATA_AMF3):
            if t == DATA_AMF3:  # AMF3 data messages carry a 1-byte format prefix before AMF0
                msg.payload = msg.payload[1:]
                msg.type_id = DATA_AMF0
            if self.publishing and msg.stream_id == self.publish_stream_id:
                events.append(MediaReceived(msg))
            return
        if t == WINDOW_ACK_SIZE:
            if len(msg.payload) >= 4:
                self._peer_window = int.from_bytes(msg.payload[:4], "big")
            return
        if t in (COMMAND_AMF0, COMMAND_AMF3):
            if not self.publishing:
                self._commands_before_publish += 1
                if self._commands_before_publish > MAX_COMMANDS_BEFORE_PUBLISH:
                    raise RtmpProtocolError(f"more than {MAX_COMMANDS_BEFORE_PUBLISH} commands before publishing")
            payload = msg.payload[1:] if t == COMMAND_AMF3 else msg.payload
            try:
                values = amf0.decode(payload)
            except amf0.Amf0Error as exc:
                raise RtmpProtocolError(f"bad command: {exc}") from exc
            if len(values) < 2 or not isinstance(values[0], str):
                raise RtmpProtocolError("command without name and transaction id")
            self._on_command(values[0], values[1], values[2:], msg.stream_id, events)
        # Acknowledgement, user control (ping responses), set chunk size and abort need no reply.

    def _on_command(self, name: str, txn: Any, args: list[Any], stream_id: int, events: list[SessionEvent]) -> None:
        if name == "connect":
            obj = args[0] if args and isinstance(args[0], dict) else {}
            self.app = str(obj.get("app", "")).strip("/")
            self.tc_url = str(obj.get("tcUrl", ""))
            self._send(CSID_CONTROL, WINDOW_ACK_SIZE, 0, WINDOW_ACK.to_bytes(4, "big"))
            self._send(CSID_CONTROL, SET_PEER_BANDWIDTH, 0, WINDOW_ACK.to_bytes(4, "big") + b"\x02")
            self._send(CSID_CONTROL, SET_CHUNK_SIZE, 0, OUT_CHUNK_SIZE.to_bytes(4, "big"))
            server: dict[str, Any] = {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0}
            if "fourCcList" in obj:  # an Enhanced RTMP client (OBS 30+): say which codecs we take
                server["fourCcList"] = list(VIDEO_FOURCCS)
            self._send_command(
                0,
                "_result",
                txn,
                server,
                {
                    "level": "status",
                    "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.",
                    "objectEncoding": float(obj.get("objectEncoding", 0) or 0),
                },
            )
        elif name == "createStream":
            sid = self._next_stream_id
            self._next_stream_id += 1
            self._send_command(0, "_result", txn, None, float(sid))
        elif name == "publish":
            if self.publishing or self._publish_pending:
                raise RtmpProtocolError("publish while already publishing")
            if not self.app:
                raise RtmpProtocolError("publish before connect")
            key = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            ptype = args[2] if len(args) > 2 and isinstance(args[2], str) else "live"
            self.publish_stream_id = stream_id
            self._publish_pending = True
            key, _, query = key.partition("?")
            events.append(PublishRequested(key, self.app, ptype, query))
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.publishing:
                self.publishing = False
                events.append(Unpublished(name))
        elif name == "play":
            self.publish_stream_id = stream_id
            self._on_status("error", "NetStream.Play.Failed", "RTMP playback is not offered; play over HLS.")
        elif name in ("releaseStream", "FCPublish", "_checkbw", "getStreamLength"):
            if txn:
                self._send_command(0, "_result", txn, None, amf0.Undefined())
        else:
            log.debug("ignoring RTMP command %r", name)
