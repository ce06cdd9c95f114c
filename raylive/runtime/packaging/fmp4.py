"""ISO BMFF (fragmented MP4 / CMAF) boxes written by hand: init segments and fragments.

One track per file, as CMAF recommends, so each rendition (video rung, audio) has its own
init segment and media segments that HLS and DASH can both reference.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
SAMPLE_FLAGS_SYNC = 0x02000000  # sample_depends_on = 2 (independent)
SAMPLE_FLAGS_NON_SYNC = 0x01010000  # depends on others, non-sync sample


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


@dataclass(frozen=True, slots=True)
class VideoTrack:
    record: bytes  # the decoder configuration record of `codec`
    width: int
    height: int
    timescale: int = 90000
    track_id: int = 1
    codec: str = "avc1"  # the sample entry: avc1, hvc1 or av01


@dataclass(frozen=True, slots=True)
class AudioTrack:
    audio_specific_config: bytes
    sample_rate: int
    channels: int
    track_id: int = 1

    @property
    def timescale(self) -> int:
        return self.sample_rate


Track = VideoTrack | AudioTrack


@dataclass(slots=True)
class Sample:
    dts: int  # in the track timescale
    duration: int
    cts_offset: int  # pts - dts
    keyframe: bool
    data: bytes


# The sample entry's configuration box (ISO/IEC 14496-15 5.4.2.1 and 8.4.1.1, AV1-ISOBMFF 2.3).
CONFIG_BOXES = {"avc1": b"avcC", "hvc1": b"hvcC", "av01": b"av1C"}


def _esds(track: AudioTrack) -> bytes:
    def descriptor(tag: int, body: bytes) -> bytes:
        n = len(body)
        size = bytes((0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F, n & 0x7F))
        return bytes((tag,)) + size + body

    dsi = descriptor(0x05, track.audio_specific_config)
    dcd = descriptor(0x04, bytes((0x40, 0x15)) + b"\x00\x00\x00" + struct.pack(">II", 0, 0) + dsi)
    es = descriptor(0x03, struct.pack(">HB", track.track_id, 0) + dcd + descriptor(0x06, b"\x02"))
    return full_box(b"esds", 0, 0, es)


def _sample_entry(track: Track) -> bytes:
    if isinstance(track, VideoTrack):
        return box(
            track.codec.encode(),
            bytes(6),
            struct.pack(">H", 1),
            bytes(16),
            struct.pack(">HHIIIH", track.width, track.height, 0x00480000, 0x00480000, 0, 1),
            bytes(32),
            struct.pack(">Hh", 0x0018, -1),
            box(CONFIG_BOXES[track.codec], track.record),
        )
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHH", track.channels, 16, 0, 0),
        struct.pack(">I", (track.sample_rate << 16) & 0xFFFFFFFF if track.sample_rate < 65536 else 0),
        _esds(track),
    )


def init_segment(track: Track) -> bytes:
    video = isinstance(track, VideoTrack)
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcisomdashmp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH", 0x00010000, 0x0100),
        bytes(10),
        MATRIX,
        bytes(24),
        struct.pack(">I", track.track_id + 1),
    )
    w, h = (track.width, track.height) if isinstance(track, VideoTrack) else (0, 0)
    tkhd = full_box(
        b"tkhd",
        0,
        3,
        struct.pack(">IIIII", 0, 0, track.track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x0100, 0),
        MATRIX,
        struct.pack(">II", w << 16, h << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, track.timescale, 0), struct.pack(">HH", 0x55C4, 0))  # 'und'
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"vide" if video else b"soun", bytes(12), b"raylive\x00")
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if video else full_box(b"smhd", 0, 0, bytes(4))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(track)),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", media_header, dinf, stbl)))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", track.track_id, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, trak, mvex)


def fragment(track: Track, sequence_number: int, samples: Sequence[Sample]) -> bytes:
    """One moof+mdat holding `samples` (consecutive, in decode order)."""
    if not samples:
        raise ValueError("a fragment needs at least one sample")
    entries = b"".join(
        struct.pack(">IIIi", s.duration, len(s.data), SAMPLE_FLAGS_SYNC if s.keyframe else SAMPLE_FLAGS_NON_SYNC, s.cts_offset)
        for s in samples
    )
    trun_flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
    # trun: header(12) + count(4) + data_offset(4) + entries
    trun_size = 12 + 8 + len(entries)
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", track.track_id))  # default-base-is-moof
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", samples[0].dts))
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    moof_size = 8 + len(mfhd) + 8 + len(tfhd) + len(tfdt) + trun_size
    trun = full_box(b"trun", 1, trun_flags, struct.pack(">Ii", len(samples), moof_size + 8), entries)
    moof = box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))
    assert len(moof) == moof_size
    payload = b"".join(s.data for s in samples)
    return moof + struct.pack(">I4s", 8 + len(payload), b"mdat") + payload
