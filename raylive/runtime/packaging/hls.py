"""HLS playlists (RFC 8216bis): a sliding-window media playlist and the multivariant playlist."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class PlaylistPart:
    uri: str
    duration_s: float
    independent: bool


@dataclass(slots=True)
class PlaylistSegment:
    uri: str
    duration_s: float
    program_date_time: float  # unix seconds of the first sample
    init_uri: str  # the EXT-X-MAP it needs (changes after a reconnect)
    discontinuity: bool = False
    parts: list[PlaylistPart] = field(default_factory=list)  # LL-HLS: listed while near the live edge
    start: int = 0  # earliest presentation time and duration in the track's timescale (for DASH)
    duration: int = 0


@dataclass(frozen=True, slots=True)
class RenditionReport:
    uri: str  # relative to the playlist that carries the report
    last_msn: int
    last_part: int  # -1: none


@dataclass
class MediaPlaylist:
    window: int = 6
    media_sequence: int = 0  # sequence number of segments[0]
    discontinuity_sequence: int = 0
    target_duration: int = 2
    ended: bool = False
    segments: deque[PlaylistSegment] = field(default_factory=deque)
    # LL-HLS (RFC 8216bis): the part target (0: no parts), the segment being written (its parts so
    # far) and the part the server writes next.
    part_target: float = 0.0
    open: PlaylistSegment | None = None
    preload_hint: str = ""
    playlist_type: str = ""  # EVENT or VOD: a recording's playlist (nothing slides out)

    def add_part(self, part: PlaylistPart, segment: PlaylistSegment, next_uri: str) -> None:
        """A part of the segment being written; `segment` says its URI, time, init and discontinuity
        (taken from the first part's call)."""
        if self.open is None or self.open.uri != segment.uri:
            self.open = segment
        self.open.parts.append(part)
        self.preload_hint = next_uri

    def append(self, seg: PlaylistSegment) -> list[PlaylistSegment]:
        """Add a segment; return the ones that slid out of the window."""
        if self.open is not None and self.open.uri == seg.uri:
            seg.parts = self.open.parts
        self.open = None
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

    def edge(self) -> tuple[int, int]:
        """(media sequence number, part index) of the newest part, or of the newest segment
        (part -1 when it has none listed): what a rendition report or a blocking reload compares."""
        if self.open is not None and self.open.parts:
            return self.media_sequence + len(self.segments), len(self.open.parts) - 1
        if not self.segments:
            return self.media_sequence - 1, -1
        return self.media_sequence + len(self.segments) - 1, len(self.segments[-1].parts) - 1

    def render(self, reports: list[RenditionReport] | None = None) -> str:
        ll = self.part_target > 0
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{9 if ll else 7}", f"#EXT-X-TARGETDURATION:{self.target_duration}"]
        if self.playlist_type:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self.playlist_type}")
        if ll:
            lines.append(
                f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={SKIP_TARGETS * self.target_duration:.1f},"
                f"HOLD-BACK={3 * self.target_duration:.1f},PART-HOLD-BACK={3 * self.part_target:.3f}"
            )
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.3f}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        # Parts are listed for the segments within 3 target durations of the live edge (the spec's
        # least), so a playlist stays short while a late joiner still finds independent parts.
        parts_from = sum(seg.duration_s for seg in self.segments) - PART_TARGETS_LISTED * self.target_duration
        init, at = None, 0.0
        for i, seg in enumerate(self.segments):
            init = self._segment_head(lines, seg, init, i > 0)
            if ll and not self.ended and at + seg.duration_s > parts_from:
                lines += [_part_line(p) for p in seg.parts]
            at += seg.duration_s
            lines.append(f"#EXTINF:{seg.duration_s:.3f},")
            lines.append(seg.uri)
        if self.open is not None and self.open.parts and not self.ended:
            self._segment_head(lines, self.open, init, bool(self.segments))
            lines += [_part_line(p) for p in self.open.parts]
        if ll and not self.ended and self.preload_hint:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.preload_hint}"')
        for r in [] if self.ended else reports or []:
            part = f",LAST-PART={r.last_part}" if r.last_part >= 0 else ""
            lines.append(f'#EXT-X-RENDITION-REPORT:URI="{r.uri}",LAST-MSN={r.last_msn}{part}')
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _segment_head(lines: list[str], seg: PlaylistSegment, init: str | None, after_another: bool) -> str:
        if seg.discontinuity and after_another:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init_uri != init:
            lines.append(f'#EXT-X-MAP:URI="{seg.init_uri}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_utc(seg.program_date_time)}")
        return seg.init_uri


SKIP_TARGETS = 6  # CAN-SKIP-UNTIL: the spec's least, six target durations
PART_TARGETS_LISTED = 3


def _part_line(p: PlaylistPart) -> str:
    independent = ",INDEPENDENT=YES" if p.independent else ""
    return f'#EXT-X-PART:DURATION={p.duration_s:.5f},URI="{p.uri}"{independent}'


def iso_utc(ts: float) -> str:
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
        # Said, so that no player probes segments for CEA-608 captions (Shaka Player probed the
        # segment being written, which has no URI of its own, and stopped).
        attrs += ",CLOSED-CAPTIONS=NONE"
        lines += [f"#EXT-X-STREAM-INF:{attrs}", v.uri]
    if not videos and audio is not None:  # audio-only stream: the audio rendition is the variant
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={audio.bandwidth},CODECS="{audio.codecs}"', audio.uri]
    return "\n".join(lines) + "\n"


# -- what a playback server reads back from a rendered media playlist (blocking reload, deltas) --
@dataclass(frozen=True, slots=True)
class PlaylistEdge:
    """Where a rendered media playlist ends: its complete segments end before `next_msn`, and
    `open_parts` parts of segment `next_msn` are listed."""

    next_msn: int
    open_parts: int
    ended: bool
    target_duration: int
    part_target: float

    def has(self, msn: int, part: int | None) -> bool:
        """Whether the playlist holds segment `msn` (complete), or part `part` of it."""
        if self.ended or msn < self.next_msn:
            return True
        return part is not None and msn == self.next_msn and part < self.open_parts

    def too_far(self, msn: int) -> bool:
        """A blocking request the spec answers 400: more than two segments beyond the last one."""
        return msn > self.next_msn + 1


def playlist_edge(text: str) -> PlaylistEdge:
    msn = target = segments = open_parts = 0
    part_target = 0.0
    ended = False
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            segments += 1
            open_parts = 0
        elif line.startswith("#EXT-X-PART:"):
            open_parts += 1
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            segments += int(_attr(line, "SKIPPED-SEGMENTS") or 0)
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PART-INF:"):
            part_target = float(_attr(line, "PART-TARGET") or 0)
        elif line == "#EXT-X-ENDLIST":
            ended = True
    return PlaylistEdge(msn + segments, open_parts, ended, target, part_target)


def newest_segment(text: str) -> tuple[str, str] | None:
    """(init URI, newest complete segment URI) of a rendered media playlist."""
    init = segment = ""
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            init = _attr(line, "URI") or ""
        elif line and not line.startswith("#"):
            segment = line
    return (init, segment) if init and segment else None


def listed_segments(text: str) -> list[PlaylistSegment]:
    """The complete segments a rendered media playlist lists (URI, duration, program date-time,
    init segment, discontinuity): what a recorder keeps of each."""
    found: list[PlaylistSegment] = []
    init, pdt, duration, discontinuity = "", 0.0, None, False
    for line in text.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            init = _attr(line, "URI") or ""
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
        elif line and not line.startswith("#") and duration is not None:
            found.append(PlaylistSegment(line, duration, pdt, init, discontinuity))
            duration, discontinuity = None, False
    return found


def _attr(line: str, name: str) -> str | None:
    for item in line.split(":", 1)[1].split(","):
        key, _, value = item.partition("=")
        if key == name:
            return value.strip('"')
    return None


SEGMENT_TAGS = ("#EXTINF:", "#EXT-X-PART:", "#EXT-X-MAP:", "#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-DISCONTINUITY", "#EXT-X-GAP")


def delta_update(text: str) -> str:
    """The Playlist Delta Update for `_HLS_skip=YES`: the segments that end more than CAN-SKIP-UNTIL
    before the playlist's end replaced by `EXT-X-SKIP` (the full playlist when none do). The first
    segment kept gets the EXT-X-MAP in force, so it reads alone."""
    lines = text.rstrip("\n").split("\n")
    skip_until = 0.0
    for line in lines:
        if line.startswith("#EXT-X-SERVER-CONTROL:"):
            skip_until = float(_attr(line, "CAN-SKIP-UNTIL") or 0)
    if not skip_until:
        return text
    head_end = next((i for i, line in enumerate(lines) if line.startswith(SEGMENT_TAGS)), len(lines))
    blocks: list[tuple[int, int, float]] = []  # (first line, after its URI, EXTINF) of each complete segment
    start, duration = head_end, None
    for i in range(head_end, len(lines)):
        if lines[i].startswith("#EXTINF:"):
            duration = float(lines[i][8:].split(",", 1)[0])
        elif duration is not None and not lines[i].startswith("#"):
            blocks.append((start, i + 1, duration))
            start, duration = i + 1, None
    total = sum(d for _, _, d in blocks)
    skipped, at, init = 0, 0.0, None
    for first, after, d in blocks:
        if at + d > total - skip_until:
            break
        for line in lines[first:after]:
            if line.startswith("#EXT-X-MAP:"):
                init = line
        skipped, at = skipped + 1, at + d
    if not skipped:
        return text
    kept_from = blocks[skipped][0] if skipped < len(blocks) else start
    kept = lines[kept_from:]
    head = [line if not line.startswith("#EXT-X-VERSION:") else "#EXT-X-VERSION:9" for line in lines[:head_end]]
    map_line = [init] if init is not None and not any(line.startswith("#EXT-X-MAP:") for line in kept[:3]) else []
    return "\n".join([*head, f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}", *map_line, *kept]) + "\n"


def segment_parts(text: str, segment_uri: str) -> tuple[list[str], bool]:
    """The parts a rendered media playlist lists for segment `segment_uri`, and whether that
    segment is complete (listed with its EXTINF); `[], False` when it names no part of it."""
    prefix = segment_uri.removesuffix(".m4s") + "."
    parts: list[str] = []
    complete = False
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:") and f'URI="{prefix}' in line:
            parts.append(line.split('URI="', 1)[1].split('"', 1)[0])
        elif line == segment_uri:
            complete = True
    return parts, complete


def is_upcoming_part(text: str, part_uri: str) -> bool:
    """Whether `part_uri` (`<epoch>-<segment>.<part>.m4s`) comes after every part of its period
    the playlist lists: the part a player asks for before it exists (EXT-X-PRELOAD-HINT, or one
    it expects next), which the server holds rather than answer 404."""
    asked = _part_position(part_uri)
    if asked is None:
        return False
    listed = [p for line in text.splitlines() if line.startswith(("#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:")) and 'URI="' in line
              if (p := _part_position(line.split('URI="', 1)[1].split('"', 1)[0])) is not None and p[0] == asked[0]]  # fmt: skip
    return bool(listed) and asked[1:] >= max(listed)[1:]


def _part_position(uri: str) -> tuple[str, int, int] | None:
    epoch, _, rest = uri.removesuffix(".m4s").partition("-")
    segment, _, part = rest.partition(".")
    return (epoch, int(segment), int(part)) if segment.isdigit() and part.isdigit() else None


def open_segment(text: str) -> PlaylistSegment | None:
    """The segment a rendered media playlist lists only as parts (the one being written), with its
    parts, program date-time, init segment and discontinuity; None when there is none."""
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if line.startswith("#EXTINF:")), default=-1)
    tail = lines[last + 2 :] if last >= 0 else lines
    init = None
    for line in lines[: last + 2] if last >= 0 else []:
        if line.startswith("#EXT-X-MAP:"):
            init = _attr(line, "URI")
    parts: list[PlaylistPart] = []
    pdt, discontinuity = 0.0, False
    for line in tail:
        if line.startswith("#EXT-X-MAP:"):
            init = _attr(line, "URI")
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXT-X-PART:"):
            parts.append(PlaylistPart(_attr(line, "URI") or "", float(_attr(line, "DURATION") or 0), _attr(line, "INDEPENDENT") == "YES"))
    if not parts or init is None or _part_position(parts[0].uri) is None:
        return None
    epoch, segment, _ = _part_position(parts[0].uri)  # type: ignore[misc]
    return PlaylistSegment(f"{epoch}-{segment}.m4s", sum(p.duration_s for p in parts), pdt, init, discontinuity, parts)
