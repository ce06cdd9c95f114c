"""FLV tag bodies as carried in RTMP audio (8) and video (9) messages.

Only what a live pipeline needs: H.264 in the legacy header; H.264, HEVC and AV1 in Enhanced RTMP's
FourCC header (veovera E-RTMP v2: ModEx prefixes, one track of a multitrack message); AAC (and MP3)
audio in either header. Video frames come out as MP4 samples. Other codecs parse into
`UnsupportedCodec` so the caller can refuse the stream with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import av1

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
SOUND_EX_HEADER = 9
SOUND_MP3 = (2, 14)  # what `ffmpeg -f flv` sends by default: re-encoded to AAC on ingest
# Enhanced RTMP FourCCs this server packages (the MP4 sample entry of the same name).
VIDEO_FOURCCS = ("avc1", "hvc1", "av01")
# E-RTMP packet types (video; audio uses the same numbers up to CodedFrames, Multitrack is 5 there).
SEQUENCE_START, CODED_FRAMES, SEQUENCE_END, CODED_FRAMES_X, METADATA, MULTITRACK, MOD_EX = 0, 1, 2, 3, 4, 6, 7
AUDIO_MULTITRACK = 5
ONE_TRACK, MANY_TRACKS, MANY_TRACKS_MANY_CODECS = 0, 1, 2


class FlvError(ValueError):
    pass


@dataclass(slots=True)
class VideoSequenceStart:
    """The decoder configuration record of `codec` (avcC, hvcC or av1C box body)."""

    codec: str  # MP4 FourCC: avc1, hvc1, av01
    record: bytes


@dataclass(slots=True)
class CodedVideoFrame:
    keyframe: bool
    composition_time: int  # ms, pts - dts
    data: bytes  # an MP4 sample: length-prefixed NAL units, or AV1 OBUs without temporal delimiters


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


VideoTag = VideoSequenceStart | CodedVideoFrame | UnsupportedCodec | Ignored
AudioTag = AacConfig | AacFrame | Mp3Frame | UnsupportedCodec | Ignored


def _fourcc(body: bytes, pos: int) -> str:
    if pos + 4 > len(body):
        raise FlvError("truncated Enhanced RTMP header")
    return bytes(body[pos : pos + 4]).decode("latin-1")


def _ex_header(body: bytes, packet_type: int, multitrack: int) -> tuple[int, str, bytes]:
    """Walks an Enhanced RTMP header after its first byte: (packet type, FourCC, the payload of
    track 0). ModEx prefixes (nanosecond timestamp offsets) are skipped: ms timing is enough here."""
    pos = 1
    while packet_type == MOD_EX:
        if pos >= len(body):
            raise FlvError("truncated ModEx")
        size, pos = body[pos] + 1, pos + 1
        if size == 256:
            size, pos = int.from_bytes(body[pos : pos + 2], "big") + 1, pos + 2
        pos += size
        if pos >= len(body):
            raise FlvError("truncated ModEx")
        packet_type, pos = body[pos] & 0x0F, pos + 1
    if packet_type != multitrack:
        return packet_type, _fourcc(body, pos), body[pos + 4 :]
    if pos >= len(body):
        raise FlvError("truncated multitrack header")
    kind, packet_type, pos = body[pos] >> 4, body[pos] & 0x0F, pos + 1
    fourcc = ""
    if kind != MANY_TRACKS_MANY_CODECS:
        fourcc, pos = _fourcc(body, pos), pos + 4
    while pos < len(body):  # a publisher's first track (id 0) is the one a legacy player would get
        if kind == MANY_TRACKS_MANY_CODECS:
            fourcc, pos = _fourcc(body, pos), pos + 4
        if pos >= len(body):
            raise FlvError("truncated multitrack track")
        track, pos = body[pos], pos + 1
        size = len(body) - pos
        if kind != ONE_TRACK:
            if pos + 3 > len(body):
                raise FlvError("truncated multitrack track size")
            size, pos = int.from_bytes(body[pos : pos + 3], "big"), pos + 3
        if track == 0:
            return packet_type, fourcc, body[pos : pos + size]
        pos += size
    return -1, fourcc, b""


def _enhanced_video(body: bytes) -> VideoTag:
    frame_type = (body[0] >> 4) & 0x07
    packet_type, fourcc, payload = _ex_header(body, body[0] & 0x0F, MULTITRACK)
    if packet_type == -1:
        return Ignored("multitrack video without track 0")
    if fourcc not in VIDEO_FOURCCS:
        return UnsupportedCodec("video", f"enhanced-RTMP {fourcc.strip()}")
    if packet_type == METADATA or frame_type == 5:
        return Ignored("video metadata or command frame")
    if packet_type == SEQUENCE_START:
        if len(payload) < 4:
            raise FlvError(f"truncated {fourcc} sequence start")
        return VideoSequenceStart(fourcc, bytes(payload))
    if packet_type in (CODED_FRAMES, CODED_FRAMES_X):
        cts = 0
        if packet_type == CODED_FRAMES and fourcc != "av01":  # only AVC and HEVC carry it
            if len(payload) < 3:
                raise FlvError(f"truncated {fourcc} frame")
            cts, payload = int.from_bytes(payload[:3], "big", signed=True), payload[3:]
        data = av1.sample_from_obus(bytes(payload)) if fourcc == "av01" else bytes(payload)
        return CodedVideoFrame(frame_type == 1, cts, data)
    return Ignored(f"video packet type {packet_type}")


def parse_video(body: bytes) -> VideoTag:
    if not body:
        return Ignored("empty video message")
    b0 = body[0]
    if b0 & 0x80:
        try:
            return _enhanced_video(body)
        except av1.Av1Error as exc:
            raise FlvError(str(exc)) from None
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
        return VideoSequenceStart("avc1", bytes(body[5:]))
    if packet_type == 1:
        return CodedVideoFrame(frame_type == 1, cts, bytes(body[5:]))
    return Ignored("AVC end of sequence")


def frame_header(body: bytes) -> tuple[bool, int] | None:
    """(keyframe, composition time) of a coded video frame from its header alone, without copying
    the frame (what the gateway needs on every message); None for anything else."""
    if len(body) < 5:
        return None
    if not body[0] & 0x80:
        if body[0] & 0x0F != CODEC_AVC or body[1] != 1:
            return None
        return body[0] >> 4 == 1, int.from_bytes(body[2:5], "big", signed=True)
    packet_type = body[0] & 0x0F
    if packet_type in (MOD_EX, MULTITRACK):  # rare: parse it whole
        try:
            tag = parse_video(body)
        except FlvError:
            return None
        return (tag.keyframe, tag.composition_time) if isinstance(tag, CodedVideoFrame) else None
    keyframe = (body[0] >> 4) & 0x07 == 1
    if packet_type == CODED_FRAMES_X or (packet_type == CODED_FRAMES and body[1:5] == b"av01"):
        return keyframe, 0
    if packet_type == CODED_FRAMES and len(body) >= 8:
        return keyframe, int.from_bytes(body[5:8], "big", signed=True)
    return None


def _enhanced_audio(body: bytes) -> AudioTag:
    packet_type, fourcc, payload = _ex_header(body, body[0] & 0x0F, AUDIO_MULTITRACK)
    if packet_type == -1:
        return Ignored("multitrack audio without track 0")
    if fourcc == ".mp3" and packet_type == CODED_FRAMES:
        return Mp3Frame(bytes(payload))
    if fourcc not in ("mp4a", ".mp3"):
        return UnsupportedCodec("audio", f"enhanced-RTMP {fourcc.strip()}")
    if fourcc == "mp4a" and packet_type == SEQUENCE_START:
        if len(payload) < 2:
            raise FlvError("truncated AudioSpecificConfig")
        return AacConfig(bytes(payload))
    if fourcc == "mp4a" and packet_type == CODED_FRAMES:
        return AacFrame(bytes(payload))
    return Ignored(f"audio packet type {packet_type}")


def parse_audio(body: bytes) -> AudioTag:
    if not body:
        return Ignored("empty audio message")
    fmt = body[0] >> 4
    if fmt == SOUND_EX_HEADER:
        return _enhanced_audio(body)
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
