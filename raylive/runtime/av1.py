"""AV1 helpers: av1C records (AV1 Codec ISOBMFF binding 2.3), sequence header dimensions, codec
strings, and OBU streams as MP4 samples."""

from __future__ import annotations

from .avc import AvcError, _Bits

OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, OBU_PADDING = 1, 2, 15


class Av1Error(ValueError):
    pass


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos >= len(data):
            raise Av1Error("truncated OBU size")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise Av1Error("OBU size longer than 8 bytes")


def obus(data: bytes) -> list[tuple[int, bytes]]:
    """(OBU type, whole OBU) of a low-overhead bitstream (every OBU has its size field)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        header = data[pos]
        if header & 0x80 or not header & 0x02:
            raise Av1Error("an OBU without its size field (not the low-overhead format)")
        size, size_end = _leb128(data, pos + 1 + ((header >> 2) & 1))
        if size_end + size > len(data):
            raise Av1Error("truncated OBU")
        out.append(((header >> 3) & 0x0F, data[pos : size_end + size]))
        pos = size_end + size
    return out


def sample_from_obus(data: bytes) -> bytes:
    """A temporal unit as an MP4 sample: without temporal delimiters and padding (AV1-ISOBMFF 2.4)."""
    units = obus(data)
    if all(kind not in (OBU_TEMPORAL_DELIMITER, OBU_PADDING) for kind, _ in units):
        return data
    return b"".join(obu for kind, obu in units if kind not in (OBU_TEMPORAL_DELIMITER, OBU_PADDING))


def _uvlc(b: _Bits) -> int:
    zeros = 0
    while not b.bit():
        zeros += 1
        if zeros >= 32:
            raise Av1Error("bad uvlc in the sequence header")
    return (1 << zeros) - 1 + b.bits(zeros)


def sequence_dimensions(obu: bytes) -> tuple[int, int]:
    """(max frame width, height) from a sequence header OBU (AV1 spec 5.5)."""
    header = obu[0]
    _, pos = _leb128(obu, 1 + ((header >> 2) & 1))
    b = _Bits(obu[pos:])
    try:
        b.bits(3)  # seq_profile
        b.bit()  # still_picture
        if b.bit():  # reduced_still_picture_header
            b.bits(5)
        else:
            decoder_model = False
            buffer_delay_bits = 0
            if b.bit():  # timing_info_present_flag
                b.bits(64)
                if b.bit():  # equal_picture_interval
                    _uvlc(b)
                decoder_model = bool(b.bit())
                if decoder_model:
                    buffer_delay_bits = b.bits(5) + 1
                    b.bits(32 + 5 + 5)
            initial_display_delay = b.bit()
            for _ in range(b.bits(5) + 1):  # operating points
                b.bits(12)
                if b.bits(5) > 7:
                    b.bit()  # seq_tier
                if decoder_model and b.bit():
                    b.bits(2 * buffer_delay_bits + 1)
                if initial_display_delay and b.bit():
                    b.bits(4)
        width_bits, height_bits = b.bits(4) + 1, b.bits(4) + 1
        return b.bits(width_bits) + 1, b.bits(height_bits) + 1
    except AvcError as exc:
        raise Av1Error(str(exc)) from None


def describe_av1c(record: bytes) -> tuple[str, int, int]:
    """(codec string, width, height)."""
    if len(record) < 4 or record[0] != 0x81:
        raise Av1Error("not an AV1CodecConfigurationRecord")
    profile, level = record[1] >> 5, record[1] & 0x1F
    tier = "H" if record[2] & 0x80 else "M"
    depth = (12 if record[2] & 0x20 else 10) if record[2] & 0x40 else 8
    headers = [obu for kind, obu in obus(record[4:]) if kind == OBU_SEQUENCE_HEADER]
    if not headers:
        raise Av1Error("av1C has no sequence header")
    return (f"av01.{profile}.{level:02d}{tier}.{depth:02d}", *sequence_dimensions(headers[0]))
