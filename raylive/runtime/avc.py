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


# NAL unit types an encoder repeats in-band that belong in the avcC record or nowhere.
NAL_SPS, NAL_PPS, NAL_AUD = 7, 8, 9


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes 00 00 01 or 00 00 00 01)."""
    nals: list[bytes] = []
    start = -1
    i = 0
    n = len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        if start >= 0:
            end = j - 1 if j > 0 and data[j - 1] == 0 else j
            if end > start:
                nals.append(data[start:end])
        start = i = j + 3
    if 0 <= start < n:
        nals.append(data[start:])
    return nals


def annexb_to_avcc_sample(data: bytes) -> bytes:
    """An Annex B access unit as an MP4/FLV sample: 4-byte length prefixes, without SPS/PPS/AUD."""
    out = bytearray()
    for nal in split_annexb(data):
        if nal[0] & 0x1F in (NAL_SPS, NAL_PPS, NAL_AUD):
            continue
        out += len(nal).to_bytes(4, "big") + nal
    return bytes(out)


def avcc_from_annexb(headers: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord (4-byte lengths) from Annex B SPS/PPS, e.g. encoder extradata."""
    nals = split_annexb(headers)
    sps = [n for n in nals if n[0] & 0x1F == NAL_SPS]
    pps = [n for n in nals if n[0] & 0x1F == NAL_PPS]
    if not sps or not pps:
        raise AvcError("encoder headers lack an SPS or a PPS")
    record = bytearray([1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps)])
    for s in sps:
        record += len(s).to_bytes(2, "big") + s
    record.append(len(pps))
    for p in pps:
        record += len(p).to_bytes(2, "big") + p
    info = parse_sps(sps[0])
    if info.profile_idc in HIGH_PROFILES:
        # High profiles carry chroma format and bit depths (ISO/IEC 14496-15 5.3.3.1.2); 4:2:0 8-bit.
        record += bytes([0xFC | 1, 0xF8, 0xF8, 0])
    return bytes(record)
