"""`StreamOutput`: where one stream's actor writes — its files to the media Redis (with the TTLs
the HLS spec asks), its live status (`store.LiveStatus`), events and ingest-health rows to the
state Redis. The stream actor is its only user, so `rl:live:NAME` has one writer."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from typing import Any

import redis

from .. import analytics, metrics, store
from ..runtime.ingest import IngestTimeline
from ..runtime.media import mp4_type
from ..runtime.packaging.hls import PART_TARGETS_LISTED
from ..runtime.packaging.live import LiveHlsPresentation, StoredFile
from ..runtime.recording import Recording
from ..settings import HlsSettings, RecordingSettings
from .recorder import Recorder
from .transcoder import TranscodeReply

log = logging.getLogger(__name__)
SEGMENT_TTL_MARGIN_S = 4  # for a viewer's clock and round trips


class StreamOutput:
    def __init__(
        self, name: str, redis_url: str, hls: HlsSettings, recording: RecordingSettings | None = None, recording_url: str = ""
    ) -> None:
        self.name = name
        self.hls = hls
        self.recording_defaults = recording or RecordingSettings()
        self.recording_url = recording_url
        self.recorder: Recorder | None = None  # made at the first recorded publish
        self.redis = redis.Redis.from_url(redis_url)  # the stream's state
        self.media = redis.Redis.from_url(store.media_url(self.redis, redis_url))  # its files
        self.media_errors = 0  # media writes that failed during this actor's life
        self._health_second = 0  # wall second of the last ingest-health row
        self._renditions_described = 0  # renditions in the live status written last
        self._late_reported = 0  # late frames counted in rows so far
        self._snapshotted = False  # a snapshot of this publish is in Redis

    def segment_ttl(self, presentation: LiveHlsPresentation | None) -> int:
        """How long a file written now stays fetchable: `hls.segment_ttl_s`, or by default what
        the HLS spec asks (a segment stays for its duration plus the playlist's after it leaves
        it), from the window as it is. Was a fixed 120 s: ≈ 10x what playlists reference."""
        if self.hls.segment_ttl_s:
            return self.hls.segment_ttl_s
        window_s = self.hls.window_segments * self.hls.target_duration_s
        if presentation is not None:
            window_s = max(window_s, presentation.longest_playlist_s())
        return math.ceil(2 * window_s + self.hls.target_duration_s) + SEGMENT_TTL_MARGIN_S

    def part_ttl(self) -> int:
        """Parts are listed for 3 target durations after their segment completes; one more, and a
        margin for a viewer's clock and round trips."""
        return math.ceil((PART_TARGETS_LISTED + 2) * self.hls.target_duration_s) + SEGMENT_TTL_MARGIN_S

    def write(self, files: list[StoredFile], presentation: LiveHlsPresentation | None, ttl: int | None = None) -> None:
        if self.recorder is not None:
            self.recorder.feed(files)
        ttl = ttl or self.segment_ttl(presentation)
        part_ttl = min(ttl, self.part_ttl())
        playlists = [f for f in files if f.path.endswith("/index.m3u8")]
        with self.media.pipeline(transaction=False) as p:
            # Files arrive in dependency order (segment or part before the playlist naming it).
            for f in files:
                p.set(store.file_key(self.name, f.path), f.data, ex=part_ttl if f.part else ttl)
            if presentation is not None and playlists:
                # What a restart needs, at each new segment (and at the first part): a restarted
                # owner recovers the parts of the segment being written from the playlist itself.
                if not self._snapshotted or any(f.media_end is not None and not f.part for f in files):
                    p.set(store.snapshot_key(self.name), json.dumps(presentation.snapshot()), ex=ttl)
                    self._snapshotted = True
                for path in presentation.long_lived_paths():
                    p.expire(store.file_key(self.name, path), ttl)
            # The playlists themselves, to the playback replicas holding requests for them (one
            # message per playlist write, whatever the number of waiting viewers).
            for f in playlists:
                p.publish(store.playlists_channel(self.name), f.path.encode() + b"\n" + f.data)
            if not self._execute(p):
                return
        now = time.time()
        for f in files:
            if f.media_end is not None:
                rendition = f.path.split("/", 1)[0]
                if f.part:
                    metrics.observe("raylive_part_latency_seconds", max(0.0, now - f.media_end), rendition=rendition)
                    continue
                metrics.inc("raylive_segments_total", stream=self.name, rendition=rendition)
                metrics.observe("raylive_segment_latency_seconds", max(0.0, now - f.media_end), rendition=rendition)

    def expire_retained(self, presentation: LiveHlsPresentation, ttl: int) -> None:
        with self.media.pipeline(transaction=False) as p:
            for path in presentation.retained_paths():
                p.expire(store.file_key(self.name, path), ttl)
            self._execute(p)

    def _execute(self, p: redis.client.Pipeline) -> bool:
        """A media write that fails (the media Redis full of keys it cannot evict, or away)
        costs this stream its output for the moment, never the stream or anyone else's."""
        try:
            p.execute()
            return True
        except redis.RedisError as exc:
            self.media_errors += 1
            if self.media_errors in (1, 10) or self.media_errors % 100 == 0:
                log.warning("stream %s: media write failed (%d so far): %s", self.name, self.media_errors, exc)
            return False

    def forget(self) -> None:
        """The stream was deleted: its files and live state go."""
        store.delete_stream_files(self.media, self.name)
        self.redis.delete(store.live_key(self.name))

    def event(self, event: str) -> None:
        self.redis.publish(store.EVENTS_CHANNEL, json.dumps({"event": event, "name": self.name, "time": time.time()}))

    def webhook(self, event: str, **data: Any) -> None:
        """Queue an event for the webhook endpoints (raylive/webhooks.py)."""
        store.emit_webhook(self.redis, event, stream=self.name, **data)

    def set_state(self, state: str, **fields: Any) -> None:
        """A new `LiveStatus.state` with the fields that go with it (`store.LiveStatus` names them)."""
        self.redis.hset(store.live_key(self.name), mapping=store.live_fields(state=state, **fields))

    def new_publish(self) -> None:
        """A publish that continues nothing: the previous one's status and playlists go, so viewers
        wait for this one's first segment."""
        self.redis.delete(store.live_key(self.name))
        self.media.delete(*(store.file_key(self.name, p) for p in LiveHlsPresentation.playlist_paths()))
        self._late_reported = 0
        self._renditions_described = 0
        self._snapshotted = False

    # -- recordings (actors/recorder.py) -------------------------------------------------------
    def start_recording(self, started_at: float) -> str | None:
        """A new publish: record it if the stream's policy (or the configured default) says so."""
        d = self.recording_defaults
        policy = {
            "enabled": d.enabled,
            "max_age_s": d.max_age_s,
            "max_bytes": d.max_bytes,
            **(store.stream_recording(self.redis, self.name) or {}),
        }
        if not policy["enabled"] or not self.recording_url:
            return None
        if self.recorder is None:
            self.recorder = Recorder(self.name, self.recording_url, on_done=self._recording_done)
        self.recorder.max_age_s, self.recorder.max_bytes = float(policy["max_age_s"] or 0), int(policy["max_bytes"] or 0)
        rec_id = self.recorder.begin(started_at)
        self.redis.hset(store.live_key(self.name), mapping=store.live_fields(recording=rec_id))
        return rec_id

    def resume_recording(self) -> None:
        """This actor restarted mid-publish: go on with the recording the publish was writing."""
        rec_id = self.status().recording
        if rec_id and self.recording_url:
            self.recorder = self.recorder or Recorder(self.name, self.recording_url, on_done=self._recording_done)
            self.recorder.resume(self.recorder.store.recording(self.name, rec_id))

    def end_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.end(time.time())

    def _recording_done(self, rec: Recording) -> None:  # on the recorder's thread
        summary = rec.summary()
        self.webhook("recording.ready" if not rec.error else "recording.failed", **summary)
        self.redis.publish(store.EVENTS_CHANNEL, json.dumps({"event": "recording", "name": self.name, "time": time.time(), **summary}))

    def each_second(
        self, timeline: IngestTimeline, presentation: LiveHlsPresentation, ladder: TranscodeReply | None, restarts: int
    ) -> None:
        """The live status and one ingest-health row (analytics), once per wall second in one round
        trip (the status was written with every push: 5 a second with LL-HLS parts), and the status
        at once when a rendition appears, so a stream that plays is described."""
        second = int(time.time())
        renditions = len(presentation.renditions)
        if second == self._health_second and renditions == self._renditions_described:
            return
        self._renditions_described = renditions  # a new rendition (the first, a rung) is described at once
        with self.redis.pipeline(transaction=False) as p:
            self.update_status(timeline, presentation, ladder, restarts, p)
            if second != self._health_second:
                self._health_second = second
                self._ingest_health(p, second, timeline, ladder)
            try:
                p.execute()
            except redis.RedisError as exc:
                log.warning("stream %s: status not written: %s", self.name, exc)

    def _ingest_health(self, pipe: Any, second: int, timeline: IngestTimeline, ladder: TranscodeReply | None) -> None:
        kbps, fps = timeline.stats.rates()
        late = timeline.stats.late_frames - self._late_reported  # in this second
        self._late_reported = timeline.stats.late_frames
        analytics.emit(
            pipe,
            "ingest",
            ts=second,
            stream=self.name,
            bitrate_kbps=round(kbps, 1),
            fps=round(fps, 2),
            keyframe_interval_ms=timeline.stats.keyframe_interval_ms,
            late_frames=late,
            transcode_lag_s=ladder.lag_s if ladder else 0.0,
            realtime_factor=ladder.realtime_factor if ladder else {},
        )

    def update_status(
        self, timeline: IngestTimeline, presentation: LiveHlsPresentation, ladder: TranscodeReply | None, restarts: int, pipe: Any = None
    ) -> None:
        kbps, fps = timeline.stats.rates()
        fields: dict[str, Any] = {"bitrate_kbps": round(kbps, 1), "fps": round(fps, 2)}
        pkg = presentation.packager
        if pkg.video_info is not None:
            fields.update(video_codec=pkg.video_info.codec_string, resolution=f"{pkg.video_info.width}x{pkg.video_info.height}")
        if pkg.aac is not None:
            fields.update(audio_codec=pkg.aac.codec_string, sample_rate=pkg.aac.sample_rate)
        fields["keyframe_interval_ms"] = timeline.stats.keyframe_interval_ms
        if ladder:
            fields.update(
                encoder=ladder.encoder,
                transcode_lag_s=ladder.lag_s,
                transcode_realtime_factor=ladder.realtime_factor,
                transcoder_pid=ladder.pid,
                transcoder_restarts=restarts,
            )
        fields["renditions"] = {
            r.name: {"bandwidth": r.peak_bps, "average_bandwidth": r.average_bps} for r in presentation.renditions.values()
        }
        (pipe or self.redis).hset(store.live_key(self.name), mapping=store.live_fields(**fields))

    def session_event(self, event: str, reason: str = "", presentation: LiveHlsPresentation | None = None) -> None:
        """A publish session's start or end (analytics `stream_sessions`), with its media at the end."""
        media: dict[str, str] = {}
        if presentation is not None:
            video, aac = presentation.packager.video_info, presentation.packager.aac
            media["video_codec"] = video.codec_string if video else ""
            media["audio_codec"] = aac.codec_string if aac else ""
            media["resolution"] = f"{video.width}x{video.height}" if video else ""
        analytics.emit(self.redis, "session", stream=self.name, event=event, reason=reason, node=socket.gethostname(), **media)

    def recover_open_segments(self, presentation: LiveHlsPresentation) -> list[StoredFile]:
        """After a restart: each rendition's segment that the old owner was writing, joined from the
        parts its playlist lists (still in Redis), so that what viewers saw stays listed."""
        files: list[StoredFile] = []
        for key, r in presentation.renditions.items():
            text = self.media.get(store.file_key(self.name, f"{r.name}/index.m3u8"))
            if text:
                files += self.join_open_segment(presentation, key, store.text(text))
        return files

    def join_open_segment(self, presentation: LiveHlsPresentation, key: str, playlist: str | None = None) -> list[StoredFile]:
        """One rendition's segment left open (`LiveHlsPresentation.recovered_segment`), joined from its parts."""
        found = presentation.recovered_segment(key, playlist)
        if found is None:
            return []
        seg, part_paths = found
        parts = [p for p in self.media.mget([store.file_key(self.name, path) for path in part_paths]) if isinstance(p, bytes)]
        if len(parts) < len(part_paths):
            return []  # expired meanwhile: those viewers saw them; the playlist moves on without
        data = b"".join(parts)
        name = presentation.renditions[key].name
        return [StoredFile(f"{name}/{seg.uri}", data, mp4_type(key), True), *presentation.add_recovered(key, seg, len(data))]

    def snapshot(self) -> dict[str, Any] | None:
        """The presentation saved with the latest playlist write (`LiveHlsPresentation.snapshot`)."""
        raw = self.media.get(store.snapshot_key(self.name))
        return json.loads(raw) if raw else None

    def status(self) -> store.LiveStatus:
        return store.read_live(self.redis.hgetall(store.live_key(self.name)))
