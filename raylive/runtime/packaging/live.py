"""One live stream's HLS presentation: media events in, files (segments, playlists) out.

`LiveHlsPresentation` combines the CMAF segmenter with sliding-window playlists and the
multivariant playlist. It returns `StoredFile`s; where they are stored is the caller's business.
Paths are relative to the stream's root (`/live/NAME/`); segment names carry the publish epoch so
that a republished stream never reuses a name a cache may hold.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..aac import SAMPLES_PER_FRAME
from ..ladder import LadderConfig, LadderFrame, LadderInput, LadderPeriod, RungOutput, frame_rate_of, source_kbps_of
from ..media import PLAYLIST_TYPE, AudioConfig, AudioFrame, MediaEvent, Metadata, VideoConfig, VideoFrame, mp4_type
from .cmaf import VIDEO_TIMESCALE, CmafPackager, InitSegment, MediaPart, MediaSegment, PackagerOutput
from .dash import MPD_TYPE, DashPeriod, DashRepresentation, DashSegment, DashTiming, render_mpd
from .hls import (
    AudioRendition,
    MediaPlaylist,
    PlaylistPart,
    PlaylistSegment,
    RenditionReport,
    VideoVariant,
    open_segment,
    render_multivariant,
)

RENDITION_DIRS = {"video": "source", "audio": "audio"}  # ladder rungs use their own names
# A rung that has not produced its first segment by the source's third is advertised late.
MASTER_WAIT_SEGMENTS = 3
# A rung's segment begins with the source's when its first frame is the source's (1 ms timestamps);
# audio segments begin within an AAC frame (≤ 23 ms) of the video's cut.
SPLIT_TOLERANCE_S = 0.010
AUDIO_SLACK_S = 0.1


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    data: bytes
    content_type: str
    immutable: bool
    media_end: float | None = None  # a segment's or part's last sample ends at this wall time (for latency)
    part: bool = False  # an LL-HLS part: listed for a few target durations only


@dataclass
class _Rendition:
    name: str  # directory under the stream root
    init: InitSegment
    init_uri: str
    playlist: MediaPlaylist
    epoch: str = ""  # period of the latest segment; a segment of another one follows a discontinuity
    dropped: bool = False  # a ladder rung given up (transcoder too slow): ended, no longer advertised
    view: bool = False  # a processor's output: its own multivariant playlist (`NAME.m3u8`), not an ABR rung
    peak_bps: int = 0
    total_bits: int = 0
    total_s: float = 0.0
    frames: int = 0
    segments_out: int = 0
    parts_out: int = 0
    paths: dict[str, float] = field(default_factory=dict)  # segment path -> seconds
    part_bits: int = 0  # parts: what there is to go by before the first segment is complete
    part_s: float = 0.0
    part_frames: int = 0

    @property
    def average_bps(self) -> int:
        return int(self.total_bits / self.total_s) if self.total_s else self.bandwidth

    @property
    def bandwidth(self) -> int:
        """Peak bits/s of its segments; before the first is complete, that of its parts so far
        (the multivariant playlist and the MPD are out at the first part)."""
        if self.peak_bps or not self.part_s:
            return self.peak_bps
        return int(self.part_bits / self.part_s)

    @property
    def frame_rate(self) -> float:
        frames, seconds = (self.frames, self.total_s) if self.total_s else (self.part_frames, self.part_s)
        return nominal_frame_rate(frames / seconds) if seconds else 0.0

    @property
    def timescale(self) -> int:
        return self.init.sample_rate if self.init.sample_rate else VIDEO_TIMESCALE


@dataclass
class _Period:
    """A publish period as DASH sees it: media time 0 of its timeline was at wall time `anchor`,
    and the period starts at its earliest media `first_s` (frozen once an MPD has named it)."""

    anchor: float
    first_s: float
    frozen: bool = False

    @property
    def start(self) -> float:
        return self.anchor + self.first_s


class LiveHlsPresentation:
    def __init__(
        self,
        epoch: str,
        target_duration_ms: int = 2000,
        window: int = 6,
        wall_start: float | None = None,
        ladder: bool = False,
        advertise_source: bool = True,
        part_ms: int = 0,
        part_target: float = 0.0,
    ) -> None:
        self.epoch = epoch
        self.window = window
        self.part_ms = part_ms
        # PART-TARGET: fixed at the stream's first part and never changed while it lasts, reconnects
        # included (iOS stops for good when it changes).
        self.part_target = part_target
        self.packager = self._packager(target_duration_ms)
        # Program date-time of media time 0: the wall time the period's first frame reached ingest,
        # less its timestamp (`push(now=)`), unless given.
        self.wall_start = time.time() if wall_start is None else wall_start
        self._anchor = wall_start is None
        self.renditions: dict[str, _Rendition] = {}
        self.periods: dict[str, _Period] = {}  # epoch -> its DASH period, in order
        # A rung's or processor view's own period (its producer restarted) -> the stream's period it
        # is in, and the media time (s) where DASH starts a Period for it.
        self.own_periods: dict[str, str] = {}
        self.dash_splits: dict[str, float] = {}
        self.availability_start = 0.0  # the MPD's availabilityStartTime: the first period's start
        self.ended = False
        self._target_s = max(1, round(target_duration_ms / 1000))
        self._master = ""
        self._view_masters: dict[str, str] = {}  # a processor's rendition -> its multivariant playlist as written
        self.metadata: dict[str, object] = {}
        # What a ladder transcoder needs (source config, frames marked where segments start),
        # collected when `ladder` is on; the owner drains it with `take_ladder_input()`.
        self._ladder_input: list[LadderInput] | None = [LadderPeriod(epoch)] if ladder else None
        self.expected: set[str] = set()  # rung renditions the master playlist waits for
        self.advertise_source = advertise_source

    def _packager(self, target_duration_ms: int) -> CmafPackager:
        max_part_ms = (self.part_target - 0.001) * 1000 - self._audio_slack_ms() if self.part_target else 0.0
        return CmafPackager(target_duration_ms, part_ms=self.part_ms, max_part_ms=max(0.0, max_part_ms))

    def _audio_slack_ms(self) -> float:
        """Audio parts are cut at the video's instants, to within one AAC frame either way."""
        aac = getattr(getattr(self, "packager", None), "aac", None)
        return SAMPLES_PER_FRAME * 1000 / aac.sample_rate if aac is not None else SAMPLES_PER_FRAME * 1000 / 44100

    # -- input ---------------------------------------------------------------------------
    def push(self, events: list[MediaEvent], now: float | None = None) -> list[StoredFile]:
        files: list[StoredFile] = []
        outputs: list[PackagerOutput] = []
        for ev in events:
            p = self.packager
            if isinstance(ev, (VideoFrame, AudioFrame)) and self._anchor and (isinstance(ev, VideoFrame) or p.video is None):
                self.wall_start = (time.time() if now is None else now) - ev.dts_ms / 1000
                self._anchor = False
            if isinstance(ev, VideoFrame):
                started, parts = p.segments_started, p.parts_started
                outputs += p.video_frame(ev.dts_ms, ev.cts_ms, ev.keyframe, ev.data)
                if self._ladder_input is not None and p.segments_started:
                    self._ladder_input.append(
                        LadderFrame(
                            ev.dts_ms,
                            ev.cts_ms,
                            ev.keyframe,
                            ev.data,
                            p.segments_started != started,
                            p.parts_started != parts,
                            p.segments_started - 1,
                        )  # fmt: skip
                    )
            elif isinstance(ev, AudioFrame):
                outputs += p.audio_frame(ev.dts_ms, ev.data)
            elif isinstance(ev, (VideoConfig, AudioConfig)):
                video = ev if isinstance(ev, VideoConfig) else p.video_source
                audio = ev.audio_specific_config if isinstance(ev, AudioConfig) else p.audio_asc
                if (p.video_source, p.audio_asc) == (video, audio):
                    continue  # a repeated sequence header
                if (isinstance(ev, VideoConfig) and p.video_source) or (isinstance(ev, AudioConfig) and p.audio_asc):
                    # New codec parameters mid-stream (e.g. a resolution switch): close the open
                    # segments, then continue after a discontinuity with new init segments.
                    files += self._store(outputs + p.finish())
                    outputs = []
                    self._new_period(secrets.token_hex(4), restart_clock=False)
                    p = self.packager
                    if video:
                        outputs += p.video_config(video)
                        self._tap_config(video)
                    if audio:
                        outputs += p.audio_config(audio)
                elif isinstance(ev, VideoConfig):
                    outputs += p.video_config(ev)
                    self._tap_config(ev)
                else:
                    outputs += p.audio_config(ev.audio_specific_config)
            elif isinstance(ev, Metadata):
                self.metadata = dict(ev.values)
        return files + self._store(outputs)

    def _tap_config(self, video: VideoConfig) -> None:
        if self._ladder_input is not None:
            parts = self.part_ms > 0
            self._ladder_input.append(LadderConfig(video, frame_rate_of(self.metadata), source_kbps_of(self.metadata), parts))

    def take_ladder_input(self) -> list[LadderInput]:
        if self._ladder_input is None:
            return []
        items, self._ladder_input = self._ladder_input, []
        return items

    def add_rung_outputs(self, outputs: list[RungOutput], view: bool = False) -> list[StoredFile]:
        """Segments from the ladder transcoder (or a processor's output, `view`), named by the
        period they were encoded in."""
        files: list[StoredFile] = []
        for o in outputs:
            files += self._store([o.output], o.epoch, view)
        return files

    def end_rendition(self, name: str) -> list[StoredFile]:
        """Stop a ladder rung (it could not keep up): its playlist ends and the master drops it."""
        r = self.renditions.get(name)
        self.expected.discard(name)
        if r is None:
            return []
        r.dropped = r.playlist.ended = True
        return [self._playlist_file(r), *self._master_files()]

    def suspend(self) -> list[StoredFile]:
        """The publisher dropped: close the open segments, but keep the playlists live (no ENDLIST)."""
        return self._store(self.packager.finish())

    def resume(self, epoch: str) -> None:
        """A publisher reconnected: continue the same playlists after an EXT-X-DISCONTINUITY.

        Its timestamps restart and its codec parameters may differ, so it gets a new packager, new
        init segments and new segment names (the epoch); media sequence numbers carry on.
        """
        self._new_period(epoch, restart_clock=True)

    def _new_period(self, epoch: str, restart_clock: bool) -> None:
        self.epoch = epoch
        self.packager = self._packager(self.packager.target_duration_ms)
        if restart_clock:  # the new media timeline starts at 0: anchored at its first frame
            self.wall_start, self._anchor = time.time(), True
        self.ended = False
        if self._ladder_input is not None:
            self._ladder_input.append(LadderPeriod(epoch))
        for r in self.renditions.values():
            r.playlist.ended = r.dropped

    # -- surviving a restart of the owning actor -------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What a restarted owner needs to continue these playlists (JSON-able; no media)."""
        rends = {}
        for key, r in self.renditions.items():
            pl = r.playlist
            rends[key] = {
                "name": r.name,
                "init": {"codec": r.init.codec, "width": r.init.width, "height": r.init.height,
                         "sample_rate": r.init.sample_rate, "channels": r.init.channels},
                "init_uri": r.init_uri, "epoch": r.epoch, "dropped": r.dropped, "view": r.view, "peak_bps": r.peak_bps,
                "total_bits": r.total_bits, "total_s": r.total_s, "frames": r.frames, "segments_out": r.segments_out,
                "paths": r.paths, "media_sequence": pl.media_sequence, "discontinuity_sequence": pl.discontinuity_sequence,
                "target_duration": pl.target_duration,
                "segments": [
                    [g.uri, g.duration_s, g.program_date_time, g.init_uri, g.discontinuity, g.start, g.duration] for g in pl.segments
                ],
            }  # fmt: skip
        p = self.packager
        return {
            "periods": {epoch: [period.anchor, period.first_s] for epoch, period in self.periods.items() if period.frozen},
            "availability_start": self.availability_start,
            "own_periods": self.own_periods,
            "dash_splits": self.dash_splits,
            "window": self.window,
            "part_ms": self.part_ms,
            "part_target": self.part_target,
            "target_duration_ms": p.target_duration_ms,
            "advertise_source": self.advertise_source,
            "video_record": p.video_source.record.hex() if p.video_source else "",
            "video_codec": p.video_source.codec if p.video_source else "",
            "audio_asc": p.audio_asc.hex() if p.audio_asc else "",
            "renditions": rends,
        }

    @classmethod
    def restore(cls, snap: dict[str, Any], epoch: str, ladder: bool) -> tuple[LiveHlsPresentation, list[MediaEvent]]:
        """The playlists of `snap`, continued in a new period (after an EXT-X-DISCONTINUITY), and
        the codec configurations to replay: the publisher will not send them again."""
        pres = cls(
            epoch, snap["target_duration_ms"], snap["window"], ladder=ladder, advertise_source=snap["advertise_source"],
            part_ms=snap.get("part_ms", 0), part_target=snap.get("part_target", 0.0),
        )  # fmt: skip
        for key, d in snap["renditions"].items():
            pl = MediaPlaylist(
                d["window"] if "window" in d else snap["window"], d["media_sequence"], d["discontinuity_sequence"], d["target_duration"],
                part_target=pres.part_target,
            )  # fmt: skip
            for uri, duration_s, pdt, init_uri, discontinuity, *ticks in d["segments"]:
                start, duration = ticks or (0, 0)
                pl.segments.append(PlaylistSegment(uri, duration_s, pdt, init_uri, discontinuity, start=start, duration=duration))
            init = InitSegment(key, b"", **d["init"])
            r = _Rendition(d["name"], init, d["init_uri"], pl, d["epoch"], d["dropped"], d["peak_bps"], d["total_bits"], d["total_s"])
            r.frames, r.segments_out, r.paths, r.view = d["frames"], d["segments_out"], dict(d["paths"]), d.get("view", False)
            pres.renditions[key] = r
        pres.periods = {epoch: _Period(anchor, first_s, frozen=True) for epoch, (anchor, first_s) in snap.get("periods", {}).items()}
        pres.availability_start = snap.get("availability_start", 0.0)
        pres.own_periods = dict(snap.get("own_periods", {}))
        pres.dash_splits = {own: float(t) for own, t in snap.get("dash_splits", {}).items()}
        replay: list[MediaEvent] = []
        if snap["video_record"]:
            replay.append(VideoConfig(bytes.fromhex(snap["video_record"]), snap["video_codec"]))
        if snap["audio_asc"]:
            replay.append(AudioConfig(bytes.fromhex(snap["audio_asc"])))
        return pres, replay

    def recovered_segment(self, rendition: str, playlist: str | None = None) -> tuple[PlaylistSegment, list[str]] | None:
        """After a restart: the segment `rendition`'s playlist (as last written, `playlist`) listed
        only as parts when the old owner died, and the paths of those parts. The owner joins them
        into the segment file and calls `add_recovered`, so the parts viewers saw stay in the
        playlist as a complete (shorter) segment before the discontinuity. Without `playlist`: the
        one being written here (a processor's host died with it open)."""
        r = self.renditions.get(rendition)
        if r is None:
            return None
        if playlist is not None:
            seg = open_segment(playlist)
        elif (o := r.playlist.open) is not None and o.parts:
            seg = PlaylistSegment(
                o.uri, sum(p.duration_s for p in o.parts), o.program_date_time, o.init_uri, o.discontinuity, list(o.parts)
            )
        else:
            seg = None
        if seg is None or any(s.uri == seg.uri for s in r.playlist.segments):
            return None
        return seg, [f"{r.name}/{p.uri}" for p in seg.parts]

    def add_recovered(self, rendition: str, seg: PlaylistSegment, size: int) -> list[StoredFile]:
        r = self.renditions[rendition]
        ts = r.timescale
        if r.playlist.segments:
            last = r.playlist.segments[-1]
            seg.start = last.start + last.duration
        seg.duration = round(seg.duration_s * ts)
        removed = r.playlist.append(seg)
        for old in removed:
            r.paths.pop(f"{r.name}/{old.uri}", None)
        r.paths[f"{r.name}/{seg.uri}"] = seg.duration_s
        r.segments_out += 1
        r.total_bits, r.total_s = r.total_bits + 8 * size, r.total_s + seg.duration_s
        r.epoch = seg.uri.partition("-")[0]
        return [self._playlist_file(r)]

    def finish(self) -> list[StoredFile]:
        """End of stream: last segments, and every playlist gets EXT-X-ENDLIST."""
        files = self._store(self.packager.finish())
        self.ended = True
        for r in self.renditions.values():
            r.playlist.ended = True
            files.append(self._playlist_file(r))
        if self.renditions:
            files += self._master_files(force=True)
            files += self._mpd_files()
        return files

    # -- output --------------------------------------------------------------------------
    def _store(self, outputs: list[PackagerOutput], epoch: str | None = None, view: bool = False) -> list[StoredFile]:
        epoch = epoch or self.epoch
        files: list[StoredFile] = []
        for out in outputs:
            if isinstance(out, MediaPart):
                files += self._store_part(out, epoch)
            elif isinstance(out, InitSegment):
                name = RENDITION_DIRS.get(out.rendition, out.rendition)
                init_uri = f"init-{epoch}.mp4"
                known = self.renditions.get(out.rendition)
                if known is None:
                    pl = MediaPlaylist(window=self.window, target_duration=self._target_s, part_target=self.part_target)
                    self.renditions[out.rendition] = _Rendition(name, out, init_uri, pl, view=view)
                else:  # a reconnected publisher: same playlist, new init segment
                    known.init, known.init_uri = out, init_uri
                    if known.view:  # a processor attached again after it ended
                        known.dropped = known.playlist.ended = False
                files.append(StoredFile(f"{name}/{init_uri}", out.data, mp4_type(out.rendition), True))
            elif isinstance(out, MediaSegment):
                r = self.renditions[out.rendition]
                seg_name = f"{epoch}-{out.index}.m4s"
                if r.dropped or f"{r.name}/{seg_name}" in r.paths:
                    continue  # (listed already: joined from its parts after its producer's owner restarted)
                anchor = self._period(out.rendition, epoch, out.start_s)
                media_end = anchor + out.start_s + out.duration_s
                files.append(StoredFile(f"{r.name}/{seg_name}", out.data, mp4_type(out.rendition), True, media_end))
                bits = len(out.data) * 8
                if out.duration_s > 0:
                    r.peak_bps = max(r.peak_bps, int(bits / out.duration_s))
                r.total_bits += bits
                r.total_s += out.duration_s
                r.frames += out.frames
                r.segments_out += 1
                seg = PlaylistSegment(
                    seg_name, out.duration_s, anchor + out.start_s, r.init_uri, r.epoch not in ("", epoch),
                    start=out.start, duration=out.duration,
                )  # fmt: skip
                r.epoch = epoch
                removed = r.playlist.append(seg)
                r.playlist.preload_hint = f"{epoch}-{out.index + 1}.0.m4s"
                for old in removed:
                    r.paths.pop(f"{r.name}/{old.uri}", None)
                r.paths[f"{r.name}/{seg_name}"] = out.duration_s
                files.append(self._playlist_file(r))
        if any(isinstance(o, (MediaSegment, MediaPart)) for o in outputs):
            files += self._master_files()
            if self._master and any(isinstance(o, MediaSegment) or (isinstance(o, MediaPart) and o.index == 0) for o in outputs):
                files += self._mpd_files()  # a segment completed, or the next one began
        return files

    def _period(self, rendition: str, epoch: str, media_start_s: float) -> float:
        """The wall time of media time 0 in `epoch` (its first output registers the period)."""
        period = self.periods.get(epoch)
        if period is None:
            if rendition not in RENDITION_DIRS:  # a rung's or view's own period (its producer restarted)
                self.own_periods.setdefault(epoch, self.epoch)
                return self.wall_start
            period = self.periods[epoch] = _Period(self.wall_start, media_start_s)
        elif not period.frozen and rendition in RENDITION_DIRS and media_start_s < period.first_s:
            period.first_s = media_start_s  # audio began before the video's first frame
        return period.anchor

    def _store_part(self, out: MediaPart, epoch: str) -> list[StoredFile]:
        r = self.renditions[out.rendition]
        if r.dropped or f"{r.name}/{epoch}-{out.segment_index}.m4s" in r.paths:
            return []  # a part of a segment listed already (joined from the parts viewers saw)
        if not self.part_target:
            # Fixed by the first part of the stream: its nominal duration (whole frames) plus an
            # AAC frame, which audio parts may run over the video's instants.
            nominal = self.packager.nominal_part_s or out.duration_s
            self.part_target = math.ceil((nominal + self._audio_slack_ms() / 1000) * 1000) / 1000
            for each in self.renditions.values():
                each.playlist.part_target = self.part_target
        uri = f"{epoch}-{out.segment_index}.{out.index}.m4s"
        anchor = self._period(out.rendition, epoch, out.start_s)
        media_end = anchor + out.start_s + out.duration_s
        r.parts_out += 1
        r.part_bits, r.part_s, r.part_frames = r.part_bits + 8 * len(out.data), r.part_s + out.duration_s, r.part_frames + out.frames
        head = PlaylistSegment(
            f"{epoch}-{out.segment_index}.m4s", 0.0, anchor + out.start_s, r.init_uri, r.epoch not in ("", epoch), start=out.start
        )
        r.playlist.add_part(PlaylistPart(uri, out.duration_s, out.independent), head, f"{epoch}-{out.segment_index}.{out.index + 1}.m4s")
        return [StoredFile(f"{r.name}/{uri}", out.data, mp4_type(out.rendition), True, media_end, part=True), self._playlist_file(r)]

    def _playlist_file(self, r: _Rendition) -> StoredFile:
        reports = []
        if self.part_target:
            for other in self.renditions.values():
                if other is not r and not other.dropped and (other.segments_out or other.parts_out):
                    msn, part = other.playlist.edge()
                    reports.append(RenditionReport(f"../{other.name}/index.m3u8", msn, part))
        return StoredFile(f"{r.name}/index.m3u8", r.playlist.render(reports).encode(), PLAYLIST_TYPE, False)

    def _master_files(self, force: bool = False) -> list[StoredFile]:
        # Only advertise renditions once each has a segment, so no player meets an empty playlist;
        # a ladder rung that is slow to start is not waited for beyond a few source segments.
        files = []
        for r in self.renditions.values():  # each processor's output, with the stream's audio
            if (
                r.view
                and not r.dropped
                and (r.segments_out or r.parts_out)
                and self._view_masters.get(r.name) != (v := self.multivariant(r))
            ):
                self._view_masters[r.name] = v
                files.append(StoredFile(f"{r.name}.m3u8", v.encode(), PLAYLIST_TYPE, False))
        if not force:
            source = self.renditions.get("video") or self.renditions.get("audio")
            if any(r.segments_out == 0 and r.parts_out == 0 for r in self.renditions.values() if not r.dropped and not r.view):
                return files
            waiting = self.expected - {n for n, r in self.renditions.items() if r.segments_out or r.parts_out}
            if waiting and (source is None or source.segments_out < MASTER_WAIT_SEGMENTS):
                return files
        text = self.multivariant()
        if text == self._master:
            return files
        self._master = text
        return [*files, StoredFile("index.m3u8", text.encode(), PLAYLIST_TYPE, False)]

    def multivariant(self, view: _Rendition | None = None) -> str:
        """The stream's multivariant playlist (source and ladder), or one processor's output's."""
        videos = []
        rungs = [
            r for n, r in self.renditions.items()
            if n not in ("video", "audio") and not r.dropped and not r.view and (r.segments_out or r.parts_out)
        ]  # fmt: skip
        listed = [view] if view is not None else [self.renditions.get("video") if self.advertise_source or not rungs else None, *rungs]
        for v in listed:
            if v is None:
                continue
            videos.append(
                VideoVariant(
                    f"{v.name}/index.m3u8", v.bandwidth, v.average_bps, v.init.codec, v.init.width, v.init.height, round(v.frame_rate, 3)
                )
            )
        a = self.renditions.get("audio")
        audio = None
        if a is not None:
            audio = AudioRendition(
                f"{a.name}/index.m3u8", "audio", "default", a.init.codec, max(a.bandwidth, a.average_bps), a.init.channels
            )
        return render_multivariant(videos, audio)

    @staticmethod
    def playlist_paths() -> list[str]:
        """The playlists of the source and audio renditions, the multivariant one and the MPD (rungs' come and go)."""
        return ["index.m3u8", "index.mpd", *(f"{d}/index.m3u8" for d in RENDITION_DIRS.values())]

    def long_lived_paths(self) -> list[str]:
        """Files written once that live as long as the playlists naming them, not for a segment's
        TTL: the multivariant playlist (rewritten only when it changes) and every init segment a
        media playlist still names. Their TTL is refreshed with each playlist write, so a viewer who
        joins a stream live for hours still finds them (they used to expire after `segment_ttl_s`)."""
        paths = ["index.m3u8", *(f"{r.name}.m3u8" for r in self.renditions.values() if r.view)]
        for r in self.renditions.values():
            inits = {r.init_uri, *(seg.init_uri for seg in r.playlist.segments)}
            paths += [f"{r.name}/{i}" for i in sorted(inits)]
        return paths

    def longest_playlist_s(self) -> float:
        """The media duration of the longest media playlist (its window as it is now)."""
        return max((sum(seg.duration_s for seg in r.playlist.segments) for r in self.renditions.values()), default=0.0)

    def retained_paths(self) -> list[str]:
        """Every stored path still referenced by a playlist (for TTL extension at the end)."""
        paths = self.long_lived_paths()
        for r in self.renditions.values():
            paths += [f"{r.name}/index.m3u8", *r.paths]
        return paths

    # -- DASH ----------------------------------------------------------------------------
    def _mpd_files(self) -> list[StoredFile]:
        """The stream's MPD, and each processor's output's own (`NAME.mpd`: it with the audio)."""
        views = [r for r in self.renditions.values() if r.view and not r.dropped and r.segments_out]
        return [self.mpd_file(), *(self.mpd_file(view=r) for r in views)]

    def mpd_file(self, now: float | None = None, view: _Rendition | None = None) -> StoredFile:
        """The MPD of what the playlists list: dynamic while live, static once ended; with `view`,
        that processor output's own MPD (its video and the stream's audio)."""
        now = time.time() if now is None else now
        periods: list[DashPeriod] = []
        for epoch, period in self.periods.items():
            if view is not None:
                listed = [r for r in self.renditions.values() if r is view or r.name == "audio"]
            else:
                listed = [r for r in self.renditions.values() if not r.view]
            splits = [(period.first_s, epoch), *self._splits(epoch, listed)]
            for index, (begin_s, period_id) in enumerate(splits):
                end_s = splits[index + 1][0] if index + 1 < len(splits) else math.inf
                reps = [rep for r in listed if (rep := self._dash_representation(r, epoch, begin_s, end_s, index == 0)) is not None]
                if not reps or (view is not None and not any(not r.audio for r in reps)):
                    continue
                if not period.frozen and view is None:
                    period.frozen = True
                    self.availability_start = self.availability_start or period.start
                periods.append(DashPeriod(period_id, period.start - self.availability_start + begin_s - period.first_s, reps))
        end = max(
            (p.start_s + (s.start + s.duration - r.presentation_time_offset) / r.timescale for p in periods for r in p.representations
             for s in r.segments[-1:]),
            default=0.0,
        )  # fmt: skip
        timing = DashTiming(
            self.availability_start, now, self.packager.target_duration_ms / 1000, self.window * self._target_s,
            self.part_target and self.packager.nominal_part_s, self.ended, end,
        )  # fmt: skip
        return StoredFile(f"{view.name}.mpd" if view else "index.mpd", render_mpd(periods, timing).encode(), MPD_TYPE, False)

    def _splits(self, epoch: str, listed: list[_Rendition]) -> list[tuple[float, str]]:
        """The DASH Periods after the first that stream period `epoch` needs for the `listed`
        renditions: (media seconds, id), one where each restarted producer's segments begin."""
        owns = {seg.uri.partition("-")[0] for r in listed for seg in r.playlist.segments}
        splits = {t: f"{epoch}-{own}" for own in sorted(owns) if self.own_periods.get(own) == epoch and (t := self._split(own)) is not None}
        return sorted(splits.items())

    def _split(self, own: str) -> float | None:
        """Where DASH starts a Period for `own` (media seconds): at its first segment that begins
        with one of the source's. A Representation has one init and one name template, so a
        restart needs a Period of its own; one mid-segment makes a shorter first segment, which
        DASH leaves out (HLS lists it)."""
        if own in self.dash_splits:
            return self.dash_splits[own]
        source = self.renditions.get("video")
        if source is None:
            return None
        starts = [seg.start / source.timescale for seg in source.playlist.segments]
        for r in self.renditions.values():
            for seg in r.playlist.segments:
                if seg.uri.partition("-")[0] == own:
                    begin = next((t for t in starts if abs(seg.start / r.timescale - t) < SPLIT_TOLERANCE_S), None)
                    if begin is not None:
                        self.dash_splits[own] = begin
                        return begin
        return None

    def _dash_representation(self, r: _Rendition, epoch: str, begin_s: float, end_s: float, first: bool) -> DashRepresentation | None:
        """`r`'s segments of stream period `epoch` that begin in [`begin_s`, `end_s`) of its media
        time (the `first` DASH Period of it: all before `end_s`), all named alike: the stream's, or
        the rendition's own after its producer restarted. None when it has none (a rung given up)."""
        if r.dropped:
            return None
        ts = r.timescale
        slack = AUDIO_SLACK_S if r.init.sample_rate else SPLIT_TOLERANCE_S
        listed = [*r.playlist.segments, *([r.playlist.open] if r.playlist.open is not None and not self.ended else [])]
        named = ""
        segments: list[DashSegment] = []
        for seg in listed:
            seg_epoch, _, number = seg.uri.removesuffix(".m4s").partition("-")
            begins = seg.start / ts
            if not (seg_epoch == epoch or self.own_periods.get(seg_epoch) == epoch) or begins >= end_s - slack:
                continue
            if not first and begins < begin_s - slack:
                continue
            named = named or seg_epoch
            if seg_epoch != named:
                continue
            duration = seg.duration
            if seg is r.playlist.open:  # being written: expected to last as long as the one before
                duration = segments[-1].duration if segments else round(self.packager.target_duration_ms * ts / 1000)
            segments.append(DashSegment(int(number), seg.start, duration))
        if not segments:
            return None
        return DashRepresentation(
            r.name, bool(r.init.sample_rate), r.init.codec, max(r.bandwidth, r.average_bps), ts, f"{r.name}/init-{named}.mp4",
            f"{r.name}/{named}-$Number$.m4s", round(begin_s * ts), segments, r.init.width, r.init.height, r.frame_rate,
            r.init.sample_rate, r.init.channels,
        )  # fmt: skip


COMMON_RATES = (10.0, 12.0, 12.5, 15.0, 20.0, 23.976, 24.0, 25.0, 29.97, 30.0, 48.0, 50.0, 59.94, 60.0, 120.0)


def nominal_frame_rate(measured: float) -> float:
    """Millisecond timestamps blur the rate (30 fps arrives as 33/33/34 ms); snap to the usual ones."""
    best = min(COMMON_RATES, key=lambda r: abs(r - measured))
    return best if abs(best - measured) <= 0.01 * best else round(measured, 3)
