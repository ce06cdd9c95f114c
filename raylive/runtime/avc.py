"""H.264 / AVC helpers: avcC records, SPS dimensions, RFC 6381 codec strings."""

from __future__ import annotations

from dataclasses import dataclass


class AvcError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SpsInfo:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    width: int
    height: int

    @property
    def codec_string(self) -> str:
        return f"avc1.{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


def parse_avcc(record: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """Return (NALU length size, SPS list, PPS list) from an AVCDecoderConfigurationRecord."""
    if len(record) < 7 or record[0] != 1:
        raise AvcError("not an AVCDecoderConfigurationRecord")
    length_size = (record[4] & 0x03) + 1
    pos = 5
    out: list[list[bytes]] = [[], []]
    for which in (0, 1):
        if pos >= len(record):
            raise AvcError("truncated avcC")
        count = record[pos] & (0x1F if which == 0 else 0xFF)
        pos += 1
        for _ in range(count):
            if pos + 2 > len(record):
                raise AvcError("truncated avcC")
            n = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if pos + n > len(record):
                raise AvcError("truncated avcC parameter set")
            out[which].append(bytes(record[pos : pos + n]))
            pos += n
    return length_size, out[0], out[1]


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise AvcError("SPS truncated")
        v = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return v

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise AvcError("bad exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        v = self.ue()
        return (v + 1) // 2 if v & 1 else -(v // 2)


def _unescape(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def parse_sps(nal: bytes) -> SpsInfo:
    if len(nal) < 4 or nal[0] & 0x1F != 7:
        raise AvcError("not an SPS NAL unit")
    b = _Bits(_unescape(nal[1:]))
    profile, constraints, level = b.bits(8), b.bits(8), b.bits(8)
    b.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    if profile in HIGH_PROFILES:
        chroma_format_idc = b.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = b.bit()
        b.ue()
        b.ue()  # bit depths
        b.bit()  # qpprime_y_zero_transform_bypass
        if b.bit():  # seq_scaling_matrix_present
            for i in range(8 if chroma_format_idc != 3 else 12):
                if b.bit():
                    last, nxt = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.bit()
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.bit()  # gaps_in_frame_num_allowed
    width_mbs = b.ue() + 1
    height_units = b.ue() + 1
    frame_mbs_only = b.bit()
    if not frame_mbs_only:
        b.bit()
    b.bit()  # direct_8x8_inference
    crop = (0, 0, 0, 0)
    if b.bit():
        crop = (b.ue(), b.ue(), b.ue(), b.ue())
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    crop_x = 1 if chroma_array_type == 0 else (2 if chroma_array_type in (1, 2) else 1)
    crop_y = (1 if chroma_array_type == 0 else (2 if chroma_array_type == 1 else 1)) * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    return SpsInfo(profile, constraints, level, width, height)


def sps_from_avcc(record: bytes) -> SpsInfo:
    _, sps, _ = parse_avcc(record)
    if not sps:
        raise AvcError("avcC has no SPS")
    return parse_sps(sps[0])
