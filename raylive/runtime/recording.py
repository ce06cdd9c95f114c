"""Recordings: what a recorder keeps of one publish session and the VOD playlists made from it.

Pure (no storage, no Ray): `RecordingPlan` turns the files a stream writes (its segments, inits and
playlists, as `StoredFile`s) into the files to store and the segments to list once they are
stored; `Recording` is the index (`index.json` beside the files) that lists only what is durable;
`expired` applies a retention policy. A reconnect within the grace stays in the same recording
(its segments follow a discontinuity, as in the live playlist)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .packaging.hls import MediaPlaylist, PlaylistSegment, listed_segments
from .packaging.live import StoredFile

INDEX = "index.json"
RECORDING_ID = r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}"  # recording_id's form: a path part that cannot climb
RECORDING = "recording"  # segments are still being added
COMPLETE = "complete"
FAILED = "failed"  # storage refused a write: what it holds stays playable, nothing more is added


def recording_id(started_at: float, suffix: str) -> str:
    """Sortable by start: `20261206T071500Z-1a2b3c`."""
    return datetime.fromtimestamp(started_at, tz=UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + suffix


@dataclass
class Recording:
    id: str
    stream: str
    started_at: float
    ended_at: float | None = None
    state: str = RECORDING
    error: str = ""
    multivariant: str = ""  # the live multivariant playlist (relative URIs, as the recording's files lie)
    segments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # rendition -> listed segments
    stored_bytes: int = 0

    def add(self, rendition: str, seg: PlaylistSegment, size: int) -> None:
        self.segments.setdefault(rendition, []).append(
            {"uri": seg.uri, "duration_s": seg.duration_s, "pdt": seg.program_date_time, "init": seg.init_uri, "disc": seg.discontinuity}
        )
        self.stored_bytes += size

    def duration_s(self) -> float:
        return max((sum(s["duration_s"] for s in segs) for segs in self.segments.values()), default=0.0)

    def media_playlist(self, rendition: str) -> str | None:
        """EVENT while recording (players may follow it), VOD with ENDLIST once ended."""
        segs = self.segments.get(rendition)
        if not segs:
            return None
        done = self.state != RECORDING
        playlist = MediaPlaylist(window=len(segs), ended=done, playlist_type="VOD" if done else "EVENT")
        playlist.target_duration = max(1, math.floor(max(s["duration_s"] for s in segs) + 0.5))
        for s in segs:
            playlist.append(PlaylistSegment(s["uri"], s["duration_s"], s["pdt"], s["init"], s["disc"]))
        return playlist.render()

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stream": self.stream,
            "state": self.state,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(self.duration_s(), 3),
            "bytes": self.stored_bytes,
            "renditions": sorted(self.segments),
            "discontinuities": max((sum(1 for s in segs[1:] if s["disc"]) for segs in self.segments.values()), default=0),
        }

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Recording:
        return cls(**json.loads(data))


@dataclass(frozen=True, slots=True)
class Store:
    """A file to store under the recording (`rendition/name`); once stored, `then` is listed."""

    path: str
    data: bytes
    then: tuple[str, PlaylistSegment] | None = None


class RecordingPlan:
    """What to store of each batch of files a stream writes: every rendition's init segments and
    complete media segments (parts and playlists are not kept: the index makes the playlists),
    each segment with what its playlist says of it. A segment written before its playlist names
    it waits (bounded) for that playlist."""

    MAX_WAITING = 64  # segment files held for their playlist entry (a rendition's playlist comes with them)

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.stored: set[str] = {f"{r}/{s['uri']}" for r, segs in recording.segments.items() for s in segs}
        self.stored |= {f"{r}/{s['init']}" for r, segs in recording.segments.items() for s in segs}
        self.waiting: dict[str, bytes] = {}
        self.last = {r: segs[-1]["uri"] for r, segs in recording.segments.items() if segs}  # newest listed per rendition

    def plan(self, files: list[StoredFile]) -> list[Store]:
        out: list[Store] = []
        playlists: list[tuple[str, str]] = []
        for f in files:
            if f.path == "index.m3u8":
                self.recording.multivariant = f.data.decode()
            elif f.path.endswith("/index.m3u8"):
                playlists.append((f.path.split("/", 1)[0], f.data.decode()))
            elif f.path.endswith(".mp4") and f.path not in self.stored:
                self.stored.add(f.path)
                out.append(Store(f.path, f.data))
            elif f.path.endswith(".m4s") and not f.part and f.path not in self.stored:
                self.waiting[f.path] = f.data
        for rendition, text in playlists:
            before = None  # the segment the playlist lists before this one
            for seg in listed_segments(text):
                path = f"{rendition}/{seg.uri}"
                data = self.waiting.pop(path, None)
                if data is not None and f"{rendition}/{seg.init_uri}" not in self.stored:
                    data = None  # its init never reached the recording: unplayable, so never listed
                if data is not None:
                    last = self.last.get(rendition)
                    # One lost in between (the actor was killed with it in flight): the timeline jumps.
                    seg.discontinuity = seg.discontinuity or (last is not None and last != before)
                    self.stored.add(path)
                    self.last[rendition] = seg.uri
                    out.append(Store(path, data, (rendition, seg)))
                before = seg.uri
        while len(self.waiting) > self.MAX_WAITING:  # never listed (e.g. slid out before a playlist came)
            self.waiting.pop(next(iter(self.waiting)))
        return out


def expired(recordings: list[dict[str, Any]], max_age_s: float, max_bytes: int, now: float | None = None) -> list[str]:
    """Ids of the recordings a retention policy removes: ended longer than `max_age_s` ago (0: no
    limit), then the oldest until the rest fit in `max_bytes` (0: no limit). Never one still
    being recorded."""
    now = time.time() if now is None else now
    done = sorted((r for r in recordings if r["state"] != RECORDING), key=lambda r: r["started_at"])
    gone = [r["id"] for r in done if max_age_s and (r["ended_at"] or r["started_at"]) < now - max_age_s]
    if max_bytes:
        total = sum(r["bytes"] for r in recordings if r["id"] not in gone)
        for r in done:
            if total <= max_bytes:
                break
            if r["id"] not in gone:
                gone.append(r["id"])
                total -= r["bytes"]
    return gone
