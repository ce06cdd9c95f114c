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
from xml.etree import ElementTree

from .packaging.dash import DashPeriod, DashRepresentation, DashSegment, DashTiming, render_mpd
from .packaging.hls import MediaPlaylist, PlaylistSegment, listed_segments
from .packaging.live import StoredFile

INDEX = "index.json"
CHUNK = 256  # segments per log chunk: a write rewrites at most this many entries (a whole index of an hour took 60 ms)


def chunk_path(k: int) -> str:
    return f"log/{k:06d}.jsonl"


RECORDING_ID = r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}"  # recording_id's form: a path part that cannot climb
RECORDING = "recording"  # segments are still being added
COMPLETE = "complete"
FAILED = "failed"  # storage refused a write: what it holds stays playable, nothing more is added


def epoch_of(uri: str) -> str:
    """The publish period a segment belongs to: its name is `EPOCH-INDEX.m4s`."""
    return uri.split("-", 1)[0]


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
    stored_bytes: int = 0
    # DASH, as the live MPD described it: "epoch/rendition" -> Representation attributes and timescale.
    representations: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, list[float]] = field(default_factory=dict)  # rendition -> [seconds, discontinuities]
    last_end: float = 0.0  # wall time where the newest listed segment ends
    entries: int = 0  # segments listed (in the log's chunks)
    # Not in the index (in its log chunks): rendition -> listed segments, and the order they came in.
    segments: dict[str, list[dict[str, Any]]] = field(default_factory=dict, compare=False)
    log: list[list[Any]] = field(default_factory=list, compare=False, repr=False)

    def add(self, rendition: str, seg: PlaylistSegment, size: int, dash: tuple[int, int] | None = None) -> None:
        entry = {
            "uri": seg.uri,
            "duration_s": seg.duration_s,
            "pdt": seg.program_date_time,
            "init": seg.init_uri,
            "disc": seg.discontinuity,
        }
        if dash is not None:
            entry["t"], entry["d"] = dash  # earliest presentation time and duration, in the timescale
        total = self.totals.setdefault(rendition, [0.0, 0])
        total[0] += seg.duration_s
        total[1] += bool(seg.discontinuity and self.segments.get(rendition))
        self.last_end = max(self.last_end, seg.program_date_time + seg.duration_s)
        self.stored_bytes += size
        self.entries += 1
        self.take(rendition, entry)

    def take(self, rendition: str, entry: dict[str, Any]) -> None:
        self.segments.setdefault(rendition, []).append(entry)
        self.log.append([rendition, entry])

    # -- as stored: index.json (small, rewritten) and the log in chunks of CHUNK segments ------------
    def index_json(self) -> bytes:
        meta = {k: v for k, v in asdict(self).items() if k not in ("segments", "log")}
        return json.dumps(meta, separators=(",", ":")).encode()

    def chunks_since(self, saved: int) -> list[tuple[str, bytes]]:
        """The log chunks holding the segments listed since `saved` were (path, bytes)."""
        out = []
        for k in range(saved // CHUNK, math.ceil(len(self.log) / CHUNK)):
            lines = (json.dumps(item, separators=(",", ":")) for item in self.log[k * CHUNK : (k + 1) * CHUNK])
            out.append((chunk_path(k), ("\n".join(lines) + "\n").encode()))
        return out

    @classmethod
    def from_index(cls, data: bytes) -> Recording:
        """The recording's description without its segments (enough to list it or apply retention)."""
        return cls(**json.loads(data))

    def extend(self, chunk: bytes) -> None:
        """Segments read back from a log chunk (loaded in order)."""
        for line in chunk.decode().splitlines():
            if line:
                rendition, entry = json.loads(line)
                self.take(rendition, entry)

    def epochs(self) -> list[str]:
        """The publish periods (segment names' epochs) in recording order: those of the source and
        audio, not a rung's own after its transcoder restarted (DASH periods are the stream's)."""
        order: dict[str, None] = {}
        stream: list[str] = [r for r in ("source", "audio") if r in self.segments] or list(self.segments)
        for rendition in stream:
            for s in self.segments[rendition]:
                order.setdefault(epoch_of(s["uri"]))
        return list(order)

    def video_rendition(self) -> str | None:
        """The video rendition clips, thumbnails and DVR periods are made from: the source, else a rung."""
        return next((r for r in ("source", *sorted(self.segments)) if r != "audio" and r in self.segments), None)

    def mpd(self) -> str | None:
        """A static MPD of the recording: a Period per publish period (as the discontinuities in HLS)."""
        periods, at = [], 0.0
        for epoch in self.epochs():
            reps = [rep for r in self.segments if (rep := self.dash_representation(epoch, r)) is not None]
            if reps:
                periods.append(DashPeriod(epoch, at, reps))
                at += max(sum(s.duration for s in rep.segments) / rep.timescale for rep in reps)
        if not periods:
            return None
        return render_mpd(periods, DashTiming(self.started_at, self.ended_at or time.time(), 2.0, 0.0, ended=True, duration_s=at))

    def dash_representation(self, epoch: str, rendition: str, since: float = 0.0) -> DashRepresentation | None:
        """The rendition's segments of period `epoch` (those starting at wall time `since` or later)."""
        attrs = self.representations.get(f"{epoch}/{rendition}")
        segs = [s for s in self.segments[rendition] if s["uri"].startswith(epoch + "-") and "t" in s and s["pdt"] >= since]
        if attrs is None or not segs:
            return None
        timeline = [DashSegment(int(s["uri"].rsplit("-", 1)[1].removesuffix(".m4s")), s["t"], s["d"]) for s in segs]
        return DashRepresentation(
            rendition, rendition == "audio", attrs["codecs"], attrs["bandwidth"], attrs["timescale"], f"{rendition}/{segs[0]['init']}",
            f"{rendition}/{epoch}-$Number$.m4s", timeline[0].start, timeline, attrs.get("width", 0), attrs.get("height", 0),
            attrs.get("frame_rate", 0.0), attrs.get("sample_rate", 0), attrs.get("channels", 0),
        )  # fmt: skip

    def duration_s(self) -> float:
        return max((t[0] for t in self.totals.values()), default=0.0)

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
            "renditions": sorted(self.totals),
            "discontinuities": int(max((t[1] for t in self.totals.values()), default=0)),
        }


@dataclass(frozen=True, slots=True)
class Store:
    """A file to store under the recording (`rendition/name`); once stored, `then` is listed."""

    path: str
    data: bytes
    then: tuple[str, PlaylistSegment] | None = None
    dash: tuple[int, int] | None = None  # the segment's (start, duration) as the live MPD gave them


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
        self.timing: dict[str, tuple[int, int]] = {}  # "rendition/uri" -> (start, duration) from the live MPD

    def plan(self, files: list[StoredFile]) -> list[Store]:
        out: list[Store] = []
        playlists: list[tuple[str, str]] = []
        mpd = None
        for f in files:
            if f.path == "index.m3u8":
                self.recording.multivariant = f.data.decode()
            elif f.path == "index.mpd":
                mpd = f.data
            elif f.path.endswith("/index.m3u8"):
                playlists.append((f.path.split("/", 1)[0], f.data.decode()))
            elif f.path.endswith(".mp4") and f.path not in self.stored:
                self.stored.add(f.path)
                out.append(Store(f.path, f.data))
            elif f.path.endswith(".m4s") and not f.part and f.path not in self.stored:
                self.waiting[f.path] = f.data
        if mpd is not None and self.waiting:  # a segment completed: what the MPD says of it
            self.timing |= _mpd_timing(mpd, self.recording.representations)
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
                    out.append(Store(path, data, (rendition, seg), self.timing.get(path)))
                before = seg.uri
        while len(self.waiting) > self.MAX_WAITING:  # never listed (e.g. slid out before a playlist came)
            self.waiting.pop(next(iter(self.waiting)))
        if len(self.timing) > 4 * self.MAX_WAITING:
            self.timing = {k: v for k, v in self.timing.items() if k not in self.stored}
        return out


_MPD_NS = "{urn:mpeg:dash:schema:mpd:2011}"


def _mpd_timing(mpd: bytes, representations: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each listed segment's (start, duration) from a live MPD, keyed "rendition/epoch-N.m4s"; the
    Representations' attributes go into `representations` ("epoch/rendition")."""
    found: dict[str, tuple[int, int]] = {}
    for period in ElementTree.fromstring(mpd).iter(f"{_MPD_NS}Period"):
        for rep in period.iter(f"{_MPD_NS}Representation"):
            template = rep.find(f"{_MPD_NS}SegmentTemplate")
            if template is None:
                continue
            rendition = rep.get("id", "")
            # The segments' epoch from their names, not the Period's id: a rung restarted in a
            # period of its own is listed in a Period that begins with it (`p1-12`).
            epoch = template.get("media", "").rsplit("/", 1)[-1].removesuffix("-$Number$.m4s")
            channels = rep.find(f"{_MPD_NS}AudioChannelConfiguration")
            representations[f"{epoch}/{rendition}"] = {
                "codecs": rep.get("codecs", ""),
                "bandwidth": int(rep.get("bandwidth", "0")),
                "timescale": int(template.get("timescale", "1")),
                "width": int(rep.get("width", "0")),
                "height": int(rep.get("height", "0")),
                "frame_rate": _rate(rep.get("frameRate", "0")),
                "sample_rate": int(rep.get("audioSamplingRate", "0")),
                "channels": int(channels.get("value", "0")) if channels is not None else 0,
            }
            number, t = int(template.get("startNumber", "0")), 0
            for sel in template.iter(f"{_MPD_NS}S"):
                t, d = int(sel.get("t", t)), int(sel.get("d", "0"))
                for _ in range(int(sel.get("r", "0")) + 1):
                    found[f"{rendition}/{epoch}-{number}.m4s"] = (t, d)
                    number, t = number + 1, t + d
    return found


def _rate(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / float(den or 1)


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
