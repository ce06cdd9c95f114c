"""AMF0 (Action Message Format 0) encoding and decoding, as used by RTMP commands.

Decoding works on a memoryview with explicit bounds and a nesting limit so that
hostile input (nesting bombs, huge lengths) fails with `Amf0Error` instead of
recursing or allocating without bound.
"""

from __future__ import annotations

import struct
from typing import Any

NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
NULL = 0x05
UNDEFINED = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11

MAX_DEPTH = 32
MAX_ITEMS = 65536


class Amf0Error(ValueError):
    """Malformed or unsupported AMF0 data."""


class Undefined:
    """The AMF0 `undefined` value (distinct from null/None)."""

    def __repr__(self) -> str:
        return "Undefined"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Undefined)

    def __hash__(self) -> int:
        return 0


class EcmaArray(dict[str, Any]):
    """An associative array; encoded with the ECMA array marker instead of object."""


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.buf):
            raise Amf0Error(f"truncated AMF0: need {n} bytes at offset {self.pos}")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def utf8(self, n: int) -> str:
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Amf0Error("invalid UTF-8 in AMF0 string") from exc


def _read_value(r: _Reader, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise Amf0Error("AMF0 nesting too deep")
    marker = r.u8()
    if marker == NUMBER:
        return struct.unpack(">d", r.take(8))[0]
    if marker == BOOLEAN:
        return r.u8() != 0
    if marker == STRING:
        return r.utf8(r.u16())
    if marker == LONG_STRING or marker == XML_DOCUMENT:
        return r.utf8(r.u32())
    if marker == NULL:
        return None
    if marker == UNDEFINED:
        return Undefined()
    if marker == OBJECT:
        return _read_properties(r, depth, {})
    if marker == TYPED_OBJECT:
        r.utf8(r.u16())  # class name: irrelevant for RTMP commands
        return _read_properties(r, depth, {})
    if marker == ECMA_ARRAY:
        r.u32()  # advisory count; the object-end marker terminates
        return _read_properties(r, depth, EcmaArray())
    if marker == STRICT_ARRAY:
        count = r.u32()
        if count > MAX_ITEMS or count > len(r.buf) - r.pos:
            raise Amf0Error(f"AMF0 strict array too long: {count}")
        return [_read_value(r, depth + 1) for _ in range(count)]
    if marker == DATE:
        millis = struct.unpack(">d", r.take(8))[0]
        r.take(2)  # timezone, unused per spec
        return millis
    raise Amf0Error(f"unsupported AMF0 marker 0x{marker:02x}")


def _read_properties(r: _Reader, depth: int, out: dict[str, Any]) -> dict[str, Any]:
    for _ in range(MAX_ITEMS):
        name = r.utf8(r.u16())
        if name == "" and r.pos < len(r.buf) and r.buf[r.pos] == OBJECT_END:
            r.pos += 1
            return out
        out[name] = _read_value(r, depth + 1)
    raise Amf0Error("AMF0 object has too many properties")


def decode(data: bytes | memoryview) -> list[Any]:
    """Decode every AMF0 value in `data` (an RTMP command is a sequence of values)."""
    r = _Reader(memoryview(data))
    values = []
    while r.pos < len(r.buf):
        values.append(_read_value(r, 0))
    return values


def _encode_string_body(s: str, out: bytearray) -> None:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise Amf0Error("property name too long for AMF0")
    out += len(raw).to_bytes(2, "big")
    out += raw


def _encode_value(v: Any, out: bytearray) -> None:
    if v is None:
        out.append(NULL)
    elif isinstance(v, Undefined):
        out.append(UNDEFINED)
    elif isinstance(v, bool):
        out += bytes((BOOLEAN, 1 if v else 0))
    elif isinstance(v, (int, float)):
        out.append(NUMBER)
        out += struct.pack(">d", float(v))
    elif isinstance(v, str):
        raw = v.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += len(raw).to_bytes(2, "big")
        else:
            out.append(LONG_STRING)
            out += len(raw).to_bytes(4, "big")
        out += raw
    elif isinstance(v, dict):
        if isinstance(v, EcmaArray):
            out.append(ECMA_ARRAY)
            out += len(v).to_bytes(4, "big")
        else:
            out.append(OBJECT)
        for key, item in v.items():
            _encode_string_body(str(key), out)
            _encode_value(item, out)
        out += b"\x00\x00" + bytes((OBJECT_END,))
    elif isinstance(v, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += len(v).to_bytes(4, "big")
        for item in v:
            _encode_value(item, out)
    else:
        raise Amf0Error(f"cannot encode {type(v).__name__} as AMF0")


def encode(*values: Any) -> bytes:
    """Encode values back to back (e.g. command name, transaction id, object, ...)."""
    out = bytearray()
    for v in values:
        _encode_value(v, out)
    return bytes(out)
