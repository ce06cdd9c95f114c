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
from dataclasses import dataclass
from typing import Any

from ..aac import SAMPLES_PER_FRAME
from ..ladder import LadderConfig, LadderFrame, LadderInput, LadderPeriod, RungOutput, frame_rate_of, source_kbps_of
from ..media import PLAYLIST_TYPE, AudioConfig, AudioFrame, MediaEvent, Metadata, VideoConfig, VideoFrame, mp4_type
from .cmaf import CmafPackager, InitSegment, MediaPart, MediaSegment, PackagerOutput
from .dash import MPD_TYPE
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
from .live_dash import LiveMpd, MpdClock
from .rendition import Rendition

RENDITION_DIRS = {"video": "source", "audio": "audio"}  # ladder rungs use their own names
# A rung that has not produced its first segment by the source's third is advertised late.
MASTER_WAIT_SEGMENTS = 3


@dataclass(frozen=True, slots=True)
class StoredFile:
    path: str
    data: bytes
    content_type: str
    immutable: bool
    media_end: float | None = None  # a segment's or part's last sample ends at this wall time (for latency)
    part: bool = False  # an LL-HLS part: listed for a few target durations only


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
        self.renditions: dict[str, Rendition] = {}
        self.dash = LiveMpd()  # the DASH periods of these playlists
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
        p = self.packager
        return {
            **self.dash.snapshot(),
            "window": self.window,
            "part_ms": self.part_ms,
            "part_target": self.part_target,
            "target_duration_ms": p.target_duration_ms,
            "advertise_source": self.advertise_source,
            "video_record": p.video_source.record.hex() if p.video_source else "",
            "video_codec": p.video_source.codec if p.video_source else "",
            "audio_asc": p.audio_asc.hex() if p.audio_asc else "",
            "renditions": {key: r.snapshot() for key, r in self.renditions.items()},
        }

    @classmethod
    def restore(cls, snap: dict[str, Any], epoch: str, ladder: bool) -> tuple[LiveHlsPresentation, list[MediaEvent]]:
        """The playlists of `snap`, continued in a new period (after an EXT-X-DISCONTINUITY), and
        the codec configurations to replay: the publisher will not send them again."""
        pres = cls(
            epoch, snap["target_duration_ms"], snap["window"], ladder=ladder, advertise_source=snap["advertise_source"],
            part_ms=snap.get("part_ms", 0), part_target=snap.get("part_target", 0.0),
        )  # fmt: skip
        pres.renditions = {key: Rendition.restore(key, d, snap["window"], pres.part_target) for key, d in snap["renditions"].items()}
        pres.dash = LiveMpd.restore(snap)
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
                    self.renditions[out.rendition] = Rendition(name, out, init_uri, pl, view=view)
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
        return self.dash.anchor(epoch, rendition in RENDITION_DIRS, media_start_s, self.wall_start, self.epoch)

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

    def _playlist_file(self, r: Rendition) -> StoredFile:
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

    def multivariant(self, view: Rendition | None = None) -> str:
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

    def mpd_file(self, now: float | None = None, view: Rendition | None = None) -> StoredFile:
        """The MPD of what the playlists list: dynamic while live, static once ended; with `view`,
        that processor output's own MPD (its video and the stream's audio)."""
        now = time.time() if now is None else now
        if view is not None:
            listed = [r for r in self.renditions.values() if r is view or r.name == "audio"]
        else:
            listed = [r for r in self.renditions.values() if not r.view]
        p = self.packager
        clock = MpdClock(now, p.target_duration_ms / 1000, self.window * self._target_s, self.part_target and p.nominal_part_s, self.ended)
        mpd = self.dash.render(listed, self.renditions.get("video"), view is not None, clock)
        return StoredFile(f"{view.name}.mpd" if view else "index.mpd", mpd.encode(), MPD_TYPE, False)
