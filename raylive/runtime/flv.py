"""FLV tag bodies as carried in RTMP audio (8) and video (9) messages.

Only what a live pipeline needs: H.264 (AVC sequence header, NALUs in AVCC framing,
composition time) and AAC (AudioSpecificConfig, raw frames). Other codecs parse into
`UnsupportedCodec` so the caller can refuse the stream with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_CODECS = {2: "Sorenson H.263", 3: "Screen video", 4: "VP6", 5: "VP6 alpha", 6: "Screen video v2", 7: "H.264", 12: "HEVC"}
AUDIO_FORMATS = {
    0: "PCM",
    1: "ADPCM",
    2: "MP3",
    3: "PCM LE",
    4: "Nellymoser 16k",
    5: "Nellymoser 8k",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    10: "AAC",
    11: "Speex",
    14: "MP3 8k",
}
CODEC_AVC = 7
SOUND_AAC = 10
SOUND_MP3 = (2, 14)  # what `ffmpeg -f flv` sends by default: re-encoded to AAC on ingest


class FlvError(ValueError):
    pass


@dataclass(slots=True)
class AvcConfig:
    """AVCDecoderConfigurationRecord (the avcC box body), from the AVC sequence header."""

    record: bytes


@dataclass(slots=True)
class AvcFrame:
    keyframe: bool
    composition_time: int  # ms, pts - dts
    data: bytes  # length-prefixed NALUs (AVCC)


@dataclass(slots=True)
class AacConfig:
    audio_specific_config: bytes


@dataclass(slots=True)
class AacFrame:
    data: bytes  # raw AAC access unit, no ADTS header


@dataclass(slots=True)
class Mp3Frame:
    data: bytes  # an MP3 frame


@dataclass(slots=True)
class UnsupportedCodec:
    kind: str  # "video" or "audio"
    name: str


@dataclass(slots=True)
class Ignored:
    why: str


VideoTag = AvcConfig | AvcFrame | UnsupportedCodec | Ignored
AudioTag = AacConfig | AacFrame | Mp3Frame | UnsupportedCodec | Ignored


def parse_video(body: bytes) -> VideoTag:
    if not body:
        return Ignored("empty video message")
    b0 = body[0]
    if b0 & 0x80:  # Enhanced RTMP (FourCC) video header
        fourcc = bytes(body[1:5]).decode("latin-1", "replace")
        return UnsupportedCodec("video", f"enhanced-RTMP {fourcc}")
    frame_type, codec_id = b0 >> 4, b0 & 0x0F
    if codec_id != CODEC_AVC:
        return UnsupportedCodec("video", VIDEO_CODECS.get(codec_id, f"codec id {codec_id}"))
    if frame_type == 5:
        return Ignored("video info/command frame")
    if len(body) < 5:
        raise FlvError("truncated AVC video tag")
    packet_type = body[1]
    cts = int.from_bytes(body[2:5], "big", signed=True)
    if packet_type == 0:
        if len(body) < 11:
            raise FlvError("truncated AVC sequence header")
        return AvcConfig(bytes(body[5:]))
    if packet_type == 1:
        return AvcFrame(frame_type == 1, cts, bytes(body[5:]))
    return Ignored("AVC end of sequence")


def parse_audio(body: bytes) -> AudioTag:
    if not body:
        return Ignored("empty audio message")
    fmt = body[0] >> 4
    if fmt in SOUND_MP3:
        return Mp3Frame(bytes(body[1:]))
    if fmt != SOUND_AAC:
        return UnsupportedCodec("audio", AUDIO_FORMATS.get(fmt, f"sound format {fmt}"))
    if len(body) < 2:
        raise FlvError("truncated AAC audio tag")
    if body[1] == 0:
        if len(body) < 4:
            raise FlvError("truncated AudioSpecificConfig")
        return AacConfig(bytes(body[2:]))
    return AacFrame(bytes(body[2:]))


def read_file_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(tag type, ms timestamp, body) of every tag of an FLV file: what an RTMP publisher of that
    file would send as (message type, timestamp, payload). Stops at a truncated tag."""
    if data[:3] != b"FLV" or len(data) < 9:
        raise ValueError("not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4  # header, then PreviousTagSize0
    tags: list[tuple[int, int, bytes]] = []
    while pos + 11 <= len(data):
        kind, size = data[pos] & 0x1F, int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        if pos + 11 + size > len(data):
            break
        tags.append((kind, ts, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags
