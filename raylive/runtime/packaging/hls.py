"""HLS playlists (RFC 8216bis): a sliding-window media playlist and the multivariant playlist."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(slots=True)
class PlaylistSegment:
    uri: str
    duration_s: float
    program_date_time: float  # unix seconds of the first sample
    init_uri: str  # the EXT-X-MAP it needs (changes after a reconnect)
    discontinuity: bool = False


@dataclass
class MediaPlaylist:
    window: int = 6
    media_sequence: int = 0  # sequence number of segments[0]
    discontinuity_sequence: int = 0
    target_duration: int = 2
    ended: bool = False
    segments: deque[PlaylistSegment] = field(default_factory=deque)

    def append(self, seg: PlaylistSegment) -> list[PlaylistSegment]:
        """Add a segment; return the ones that slid out of the window."""
        self.segments.append(seg)
        # TARGETDURATION must never shrink and must cover every EXTINF rounded to an integer.
        self.target_duration = max(self.target_duration, math.floor(seg.duration_s + 0.5))
        removed = []
        while len(self.segments) > self.window:
            old = self.segments.popleft()
            self.media_sequence += 1
            if self.segments and self.segments[0].discontinuity:
                self.discontinuity_sequence += 1
            removed.append(old)
        return removed

    def render(self) -> str:
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        init = None
        for i, seg in enumerate(self.segments):
            if seg.discontinuity and i > 0:
                lines.append("#EXT-X-DISCONTINUITY")
            if seg.init_uri != init:
                init = seg.init_uri
                lines.append(f'#EXT-X-MAP:URI="{init}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(seg.program_date_time)}")
            lines.append(f"#EXTINF:{seg.duration_s:.3f},")
            lines.append(seg.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class VideoVariant:
    uri: str
    bandwidth: int
    average_bandwidth: int
    codecs: str
    width: int
    height: int
    frame_rate: float


@dataclass(frozen=True, slots=True)
class AudioRendition:
    uri: str
    group_id: str
    name: str
    codecs: str
    bandwidth: int
    channels: int


def render_multivariant(videos: list[VideoVariant], audio: AudioRendition | None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{audio.group_id}",NAME="{audio.name}",'
            f'DEFAULT=YES,AUTOSELECT=YES,CHANNELS="{audio.channels}",URI="{audio.uri}"'
        )
    for v in videos:
        codecs = f"{v.codecs},{audio.codecs}" if audio else v.codecs
        bw, avg = v.bandwidth + (audio.bandwidth if audio else 0), v.average_bandwidth + (audio.bandwidth if audio else 0)
        attrs = f'BANDWIDTH={bw},AVERAGE-BANDWIDTH={avg},CODECS="{codecs}",RESOLUTION={v.width}x{v.height}'
        if v.frame_rate > 0:
            attrs += f",FRAME-RATE={v.frame_rate:.3f}"
        if audio is not None:
            attrs += f',AUDIO="{audio.group_id}"'
        lines += [f"#EXT-X-STREAM-INF:{attrs}", v.uri]
    if not videos and audio is not None:  # audio-only stream: the audio rendition is the variant
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={audio.bandwidth},CODECS="{audio.codecs}"', audio.uri]
    return "\n".join(lines) + "\n"
