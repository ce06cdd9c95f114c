"""RTMP chunk stream: reassembles chunks into messages and splits messages into chunks.

Sans-IO: `ChunkReader.feed(bytes)` returns complete messages; nothing here touches a socket.
All four chunk header types (fmt 0..3), 1/2/3-byte basic headers, extended timestamps
(including their repetition on fmt-3 continuation chunks, as ffmpeg and librtmp send them),
Set Chunk Size and Abort are handled here because they change how the next bytes parse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Message type ids (RTMP spec 5.4 and 7.1)
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
COMMAND_AMF3 = 17
DATA_AMF0 = 18
COMMAND_AMF0 = 20
AGGREGATE = 22

DEFAULT_CHUNK_SIZE = 128
MAX_CHUNK_SIZE = 1 << 24
DEFAULT_MAX_MESSAGE_SIZE = 16 << 20
MAX_CHUNK_STREAMS = 64
EXTENDED_TS = 0xFFFFFF
MEDIA_TYPES = frozenset((AUDIO, VIDEO, AGGREGATE))
DATA_TYPES = frozenset((DATA_AMF0, DATA_AMF3))


@dataclass(frozen=True, slots=True)
class ChunkLimits:
    """What one peer may make us hold. Declared lengths are checked at the header, before any
    payload is buffered; `max_partial_bytes` bounds what is buffered across chunk streams."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # audio, video, aggregate
    max_data_size: int = 64 << 10  # metadata (onMetaData from OBS and ffmpeg: < 1 KiB)
    # Commands and control: the gateway decodes these on its event loop. 8 KiB of the costliest
    # AMF0 (all nulls) decodes in 5 ms here; an 8 MiB command stalled every publisher for 1 s.
    max_command_size: int = 8 << 10
    max_chunk_streams: int = MAX_CHUNK_STREAMS
    max_partial_bytes: int = 32 << 20


# Before a publish is accepted nobody is authenticated: ffmpeg and OBS use chunk streams 2..8 and
# send nothing larger than a few hundred bytes until then, so a stranger gets 8 streams and 128 KiB.
BEFORE_PUBLISH_LIMITS = ChunkLimits(max_chunk_streams=8, max_partial_bytes=128 << 10)


class ChunkError(ValueError):
    """The peer sent a chunk stream that violates the protocol or our limits."""


@dataclass(slots=True)
class RtmpMessage:
    type_id: int
    timestamp: int  # milliseconds, 32-bit wrapping as sent by the peer
    stream_id: int
    payload: bytes
    csid: int = 0


@dataclass(slots=True)
class _ChunkStreamState:
    timestamp: int = 0
    ts_field: int = 0  # last timestamp field seen (absolute for fmt 0, delta otherwise)
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    partial: bytearray = field(default_factory=bytearray)
    started: bool = False  # a fmt-0 header has been seen on this chunk stream


class ChunkReader:
    """Incremental parser of the peer's chunk stream."""

    def __init__(self, limits: ChunkLimits | None = None) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.limits = limits or ChunkLimits()
        self.bytes_received = 0
        self.messages_received = 0
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStreamState] = {}
        self._partial_bytes = 0  # payload bytes of messages not yet complete, all chunk streams

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[RtmpMessage]:
        self.bytes_received += len(data)
        self._buf += data
        out: list[RtmpMessage] = []
        pos = 0
        while True:
            # On ChunkError the connection is dropped, so the buffer need not be trimmed.
            consumed = self._parse_chunk(memoryview(self._buf)[pos:], out)
            if consumed == 0:
                break
            pos += consumed
        del self._buf[:pos]
        return out

    def _parse_chunk(self, view: memoryview, out: list[RtmpMessage]) -> int:
        n = len(view)
        if n < 1:
            return 0
        b0 = view[0]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        pos = 1
        if csid == 0:
            if n < 2:
                return 0
            csid = 64 + view[1]
            pos = 2
        elif csid == 1:
            if n < 3:
                return 0
            csid = 64 + view[1] + (view[2] << 8)
            pos = 3
        header_len = (11, 7, 3, 0)[fmt]
        if n < pos + header_len:
            return 0
        st = self._streams.get(csid)
        if st is None:
            if len(self._streams) >= self.limits.max_chunk_streams:
                raise ChunkError(f"more than {self.limits.max_chunk_streams} chunk streams")
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} starts with fmt {fmt}, not 0")
            st = _ChunkStreamState()
        new_message = len(st.partial) == 0
        ts_field = st.ts_field
        length, type_id, stream_id = st.length, st.type_id, st.stream_id
        if fmt <= 2:
            ts_field = int.from_bytes(view[pos : pos + 3], "big")
            if fmt <= 1:
                length = int.from_bytes(view[pos + 3 : pos + 6], "big")
                type_id = view[pos + 6]
                if fmt == 0:
                    stream_id = int.from_bytes(view[pos + 7 : pos + 11], "little")
        pos += header_len
        extended = ts_field == EXTENDED_TS if fmt <= 2 else st.extended
        if extended:
            if n < pos + 4:
                return 0
            ext = int.from_bytes(view[pos : pos + 4], "big")
            pos += 4
            if fmt <= 2:
                ts_field = ext
        if not new_message and fmt != 3:
            raise ChunkError(f"fmt {fmt} chunk interrupts a partial message on chunk stream {csid}")
        if new_message:
            if type_id in MEDIA_TYPES:
                limit = self.limits.max_message_size
            else:
                limit = self.limits.max_data_size if type_id in DATA_TYPES else self.limits.max_command_size
            if length > limit:
                raise ChunkError(f"message length {length} (type {type_id}) exceeds limit {limit}")
        need = min(self.chunk_size, length - len(st.partial))
        if n < pos + need:
            return 0
        if need < length - len(st.partial) and self._partial_bytes + need > self.limits.max_partial_bytes:
            raise ChunkError(f"more than {self.limits.max_partial_bytes} bytes of incomplete messages")
        # Commit header state only once the whole chunk is available.
        if new_message:
            if fmt == 0:
                st.timestamp = ts_field
            else:
                st.timestamp = (st.timestamp + ts_field) & 0xFFFFFFFF
            st.ts_field = ts_field
            st.length, st.type_id, st.stream_id = length, type_id, stream_id
            st.extended = extended
        self._streams[csid] = st
        st.partial += view[pos : pos + need]
        self._partial_bytes += need
        pos += need
        if len(st.partial) == st.length:
            msg = RtmpMessage(st.type_id, st.timestamp, st.stream_id, bytes(st.partial), csid)
            self._partial_bytes -= len(st.partial)
            st.partial.clear()
            self._handle_control(msg)
            self.messages_received += 1
            out.append(msg)
        return pos

    def _handle_control(self, msg: RtmpMessage) -> None:
        if msg.type_id == SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise ChunkError("short Set Chunk Size")
            size = int.from_bytes(msg.payload[:4], "big") & 0x7FFFFFFF
            if not 1 <= size <= MAX_CHUNK_SIZE:
                raise ChunkError(f"chunk size {size} out of range")
            self.chunk_size = size
        elif msg.type_id == ABORT:
            if len(msg.payload) < 4:
                raise ChunkError("short Abort")
            st = self._streams.get(int.from_bytes(msg.payload[:4], "big"))
            if st is not None:
                self._partial_bytes -= len(st.partial)
                st.partial.clear()


def encode_message(
    csid: int,
    type_id: int,
    stream_id: int,
    timestamp: int,
    payload: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """Serialize one message: a fmt-0 chunk followed by fmt-3 continuation chunks."""
    if not 2 <= csid <= 65599:
        raise ValueError(f"invalid chunk stream id {csid}")

    def basic(fmt: int) -> bytes:
        if csid < 64:
            return bytes(((fmt << 6) | csid,))
        if csid < 320:
            return bytes((fmt << 6, csid - 64))
        return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))

    timestamp &= 0xFFFFFFFF
    extended = timestamp >= EXTENDED_TS
    ext = timestamp.to_bytes(4, "big") if extended else b""
    out = bytearray(basic(0))
    out += (EXTENDED_TS if extended else timestamp).to_bytes(3, "big")
    out += len(payload).to_bytes(3, "big")
    out.append(type_id)
    out += stream_id.to_bytes(4, "little")
    out += ext
    view = memoryview(payload)
    out += view[:chunk_size]
    cont = basic(3) + ext
    for i in range(chunk_size, len(payload), chunk_size):
        out += cont
        out += view[i : i + chunk_size]
    return bytes(out)
