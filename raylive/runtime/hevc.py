"""H.265 / HEVC helpers: hvcC records (ISO/IEC 14496-15 8.3.3), SPS dimensions, codec strings."""

from __future__ import annotations

from .avc import AvcError, _Bits, _unescape

NAL_VPS, NAL_SPS, NAL_PPS = 32, 33, 34


class HevcError(ValueError):
    pass


def _codec_string(record: bytes) -> str:
    """RFC 6381 / ISO/IEC 14496-15 Annex E: hvc1.<space><profile>.<compat, bit-reversed>.<tier><level>.<constraints>."""
    space = "ABC"[(record[1] >> 6) - 1] if record[1] >> 6 else ""
    profile = record[1] & 0x1F
    tier = "H" if record[1] & 0x20 else "L"
    compat = int(f"{int.from_bytes(record[2:6], 'big'):032b}"[::-1], 2)
    constraints = list(record[6:12])
    while constraints and constraints[-1] == 0:
        constraints.pop()
    tail = "".join(f".{c:X}" for c in constraints)
    return f"hvc1.{space}{profile}.{compat:X}.{tier}{record[12]}{tail}"


def parameter_sets(record: bytes) -> dict[int, list[bytes]]:
    """NAL units of each type (VPS, SPS, PPS, SEI) in an HEVCDecoderConfigurationRecord."""
    if len(record) < 23 or record[0] != 1:
        raise HevcError("not an HEVCDecoderConfigurationRecord")
    out: dict[int, list[bytes]] = {}
    pos, arrays = 23, record[22]
    for _ in range(arrays):
        if pos + 3 > len(record):
            raise HevcError("truncated hvcC")
        nal_type, count = record[pos] & 0x3F, int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            if pos + 2 > len(record):
                raise HevcError("truncated hvcC")
            n = int.from_bytes(record[pos : pos + 2], "big")
            if pos + 2 + n > len(record):
                raise HevcError("truncated hvcC parameter set")
            out.setdefault(nal_type, []).append(bytes(record[pos + 2 : pos + 2 + n]))
            pos += 2 + n
    return out


def sps_dimensions(nal: bytes) -> tuple[int, int]:
    """(width, height) after the conformance window, from an SPS NAL unit (ITU-T H.265 7.3.2.2)."""
    if len(nal) < 4 or (nal[0] >> 1) & 0x3F != NAL_SPS:
        raise HevcError("not an HEVC SPS NAL unit")
    b = _Bits(_unescape(nal[2:]))
    try:
        b.bits(4)  # sps_video_parameter_set_id
        sub_layers = b.bits(3)  # sps_max_sub_layers_minus1
        b.bit()  # sps_temporal_id_nesting_flag
        b.bits(96)  # general profile, tier, level
        present = [(b.bit(), b.bit()) for _ in range(sub_layers)]
        if sub_layers:
            b.bits(2 * (8 - sub_layers))
        for profile_present, level_present in present:
            b.bits(88 * profile_present + 8 * level_present)
        b.ue()  # sps_seq_parameter_set_id
        chroma_format_idc = b.ue()
        if chroma_format_idc == 3 and b.bit():  # separate_colour_plane_flag
            chroma_format_idc = 0
        width, height = b.ue(), b.ue()
        if b.bit():  # conformance_window_flag
            left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
            sub_w, sub_h = {1: (2, 2), 2: (2, 1)}.get(chroma_format_idc, (1, 1))
            width -= sub_w * (left + right)
            height -= sub_h * (top + bottom)
    except AvcError as exc:
        raise HevcError(str(exc)) from None
    return width, height


def describe_hvcc(record: bytes) -> tuple[str, int, int]:
    """(codec string, width, height)."""
    sps = parameter_sets(record).get(NAL_SPS)
    if not sps:
        raise HevcError("hvcC has no SPS")
    return (_codec_string(record), *sps_dimensions(sps[0]))
