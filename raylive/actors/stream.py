"""`StreamIngest`: the one Ray actor that owns a live stream's timeline and packaging.

Created by the gateway on publish and named `stream:NAME:ingest` so the Ray dashboard shows it.
It takes batches of RTMP media messages (one actor call per flush interval, not per packet),
and writes segments and playlists to Redis, from where any playback replica serves them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

import av
import ray
import redis
from ray.exceptions import GetTimeoutError, RayError

from .. import analytics, metrics, store
from ..names import REGISTRY_NAME, actor_name, transcoder_name
from ..runtime.avc import sps_from_avcc
from ..runtime.frames import keyframe_jpeg
from ..runtime.ingest import IngestTimeline, RawMessage, UnsupportedMedia
from ..runtime.lifecycle import NOT_CURRENT_PUBLISHER, AskHolder, End, PublisherLifecycle, Refuse
from ..runtime.packaging.live import RENDITION_DIRS, LiveHlsPresentation, StoredFile
from ..runtime.rtmp.chunk import VIDEO
from ..runtime.transcode import ENCODERS, LadderConfig, LadderFrame, LadderInput, LadderPeriod, estimate_cpus, plan_ladder
from ..settings import HlsSettings, TranscodeSettings
from .transcoder import StreamTranscoderActor

log = logging.getLogger(__name__)


CLOCK_S = 1.0  # the actor's clock: a tick when nothing else ran for this long (`PublisherLifecycle.tick`)
HOLDER_CHECK_TIMEOUT_S = 2.0  # asking another gateway whether it still has the stream's publisher
MAX_TRANSCODER_RESTARTS = 3  # per publish
# How long the end of a publish waits for the transcoder to flush its last segments.
LADDER_DRAIN_TIMEOUT_S = 10.0
# A processor with this many batches (≈ 2 s) unanswered is behind: skip to the next keyframe.
MAX_SUBSCRIBER_BACKLOG = 8
THUMBNAIL_INTERVAL_S = 5.0
SEGMENT_TTL_MARGIN_S = 4  # for a viewer's clock and round trips
# An ended stream's actor exits this long after the end (nobody claimed it meanwhile): each one
# left running held ≈ 85 MB and a GCS entry for good. A publisher that restarts its encoder at
# once still finds it warm; later ones get a new actor (≈ 1 CPU-s).
ENDED_EXIT_S = 10.0
BITRATE_WINDOW_S = 4.0  # a publisher is held to rtmp.max_bitrate_kbps over this much wall time


@dataclass
class _Subscriber:
    """A processor host fed this stream's compressed video."""

    handle: Any
    calls: deque[Any] = field(default_factory=deque)
    resync: bool = True  # must restart from a configuration and a keyframe
    dropped: int = 0  # frames skipped since the last batch it got


class StreamIngest:
    def __init__(
        self,
        name: str,
        redis_url: str,
        hls: HlsSettings,
        reconnect_grace_s: float = 10.0,
        transcode: TranscodeSettings | None = None,
        max_bitrate_kbps: float = 0,
    ) -> None:
        self.max_bitrate_kbps = max_bitrate_kbps
        self.name = name
        self.hls = hls
        self.transcode = transcode or TranscodeSettings()
        self.ladder: list[str] = self.transcode.ladder
        self.transcoder: Any = None  # StreamTranscoder handle while a ladder runs
        self._tx_ready: Any = None  # its `ready()` ref until Ray has placed it
        self._tx_created = 0.0
        self._tx_calls: deque[Any] = deque()  # outstanding `push` refs, oldest first
        self._tx_status: dict[str, Any] = {}
        self._ladder_off = False  # no room or a failure: this publish serves the source only
        self._tx_restarts = 0  # transcoders lost during this publish (died, or failed a batch)
        self._tx_resume = False  # start a new transcoder at the next keyframe
        self._health_second = 0  # wall second of the last ingest-health event
        self.subscribers: dict[str, _Subscriber] = {}  # processor name -> its host
        self._last_config: LadderConfig | None = None
        self._thumbnail_at = 0.0
        self._late_reported = 0
        self._media_errors = 0  # media writes that failed during this actor's life
        self._ended = False  # the last publish ended (the actor exits after ENDED_EXIT_S)
        self.redis = redis.Redis.from_url(redis_url)  # the stream's state
        self.media = redis.Redis.from_url(store.media_url(self.redis, redis_url))  # its files
        self.lifecycle = PublisherLifecycle(name, reconnect_grace_s)
        self.timeline: IngestTimeline | None = None
        self.presentation: LiveHlsPresentation | None = None
        self.started_at = 0.0
        if self.redis.hget(store.live_key(name), "state") in (b"live", b"reconnecting"):
            # Ray restarted this actor mid-publish: the publisher may reclaim the stream (its
            # gateway retries); if nobody does within the grace, the clock ends it.
            self.lifecycle.suspended_after_restart(time.monotonic())
        self._last_call = time.monotonic()
        threading.Thread(target=self._clock, name="stream-clock", daemon=True).start()

    # -- publisher lifecycle (the rules: raylive/runtime/lifecycle.py) --------------------
    def _clock(self) -> None:
        """The stream's own time: ask for a `tick` when nothing else ran for CLOCK_S while the
        lifecycle has a deadline. Only submits a call, so state is touched by Ray's one thread."""
        me = ray.get_runtime_context().current_actor
        while True:
            time.sleep(CLOCK_S)
            idle_s = time.monotonic() - self._last_call
            if self.lifecycle.watching and idle_s >= CLOCK_S:
                me.tick.remote()
            elif self._ended and idle_s >= ENDED_EXIT_S:
                # Asked once: the actor drains its queue before it exits, and a call submitted
                # every second kept it alive for good.
                self._ended = False
                me.exit_if_ended.remote()

    def exit_if_ended(self) -> None:
        """The stream ended and nobody claimed it since: free the process (and the name)."""
        if self.lifecycle.owner is None and self.lifecycle.suspended is None and time.monotonic() - self._last_call >= ENDED_EXIT_S:
            log.info("stream %s: ended %.0fs ago; its actor exits", self.name, time.monotonic() - self._last_call)
            ray.actor.exit_actor()

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def tick(self) -> None:
        self._last_call = time.monotonic()
        decision = self.lifecycle.tick(self._last_call)
        if decision is None:
            return
        if self.presentation is None:  # restarted, and the publisher never came back
            restored = self._restore(secrets.token_hex(4))
            if restored is None:
                return
            self.presentation = restored[0]
        self._finalize(decision.reason)

    def claim(self, token: str, peer: str, gateway: str = "") -> dict[str, Any]:
        now = self._last_call = time.monotonic()
        decision = self.lifecycle.claim(token, gateway, now)
        if isinstance(decision, AskHolder):
            decision = self.lifecycle.claim(token, gateway, now, holder_present=self._holder_present(decision))
            assert not isinstance(decision, AskHolder)  # answered
        if isinstance(decision, Refuse):
            return {"ok": False, "reason": decision.reason}
        if decision.replaced is not None:
            # A half-open connection (the encoder reconnected first) or one whose gateway is gone:
            # treat it as dropped and let the new publisher continue its playlists.
            log.warning("stream %s: replacing a publisher that is not there any more", self.name)
            self._suspend_output("replaced by a new publisher")
        self.timeline = IngestTimeline()
        self._late_reported = 0
        self._ended = False
        epoch = secrets.token_hex(4)
        restored = self._restore(epoch) if self.presentation is None else None
        if restored is not None:
            self.presentation, replay = restored
            self._write(self.presentation.push(replay))
            self.started_at = float(self.redis.hget(store.live_key(self.name), "started_at") or time.time())
            log.warning("stream %s: continuing its playlists after a restart of this actor (%s)", self.name, peer)
            self._subscribe_processors()
        elif decision.resume and self.presentation is not None:
            self.presentation.resume(epoch)  # same playlists, after a discontinuity
            log.info("stream %s: publisher reconnected from %s; continuing the playlists", self.name, peer)
        else:
            self._stop_transcoder()
            self.ladder = self._stream_ladder()
            self._ladder_off, self._tx_restarts, self._tx_resume = False, 0, False
            self.presentation = LiveHlsPresentation(
                epoch,
                int(self.hls.target_duration_s * 1000),
                self.hls.window_segments,
                ladder=True,  # the tap also feeds processors and thumbnails
                advertise_source="source" in self.ladder,
            )
            self.started_at = time.time()
            # Drop the previous publish's playlists: viewers wait for this one's first segment.
            stale = ["index.m3u8", *(f"{d}/index.m3u8" for d in RENDITION_DIRS.values())]
            self.redis.delete(store.live_key(self.name))
            self.media.delete(*(store.file_key(self.name, p) for p in stale))
            log.info("stream %s: publish started from %s", self.name, peer)
            analytics.emit(self.redis, "session", stream=self.name, event="start", node=socket.gethostname())
            self._subscribe_processors()
        self._set_state(
            "live",
            started_at=self.started_at,
            node=socket.gethostname(),
            node_id=ray.get_runtime_context().get_node_id(),
            actor=actor_name(self.name),
            pid=os.getpid(),
            epoch=epoch,
        )
        self._event("publish")
        return {"ok": True, "epoch": epoch}

    def _holder_present(self, ask: AskHolder) -> bool:
        """Whether the gateway of the stream's holder still has its connection (False when that
        gateway, or its node, is gone or does not answer in time)."""
        try:
            gateway = ray.get_actor(ask.gateway, namespace=ray.get_runtime_context().namespace)
            return bool(ray.get(gateway.holds.remote(ask.token), timeout=HOLDER_CHECK_TIMEOUT_S))
        except (ValueError, RayError, GetTimeoutError):
            return False

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def push(self, token: str, batch: list[RawMessage]) -> dict[str, Any]:
        self._last_call = time.monotonic()
        refused = NOT_CURRENT_PUBLISHER if self.timeline is None or self.presentation is None else None
        refused = refused or self.lifecycle.push(token, self._last_call)
        if refused:
            return {"ok": False, "reason": refused}
        assert self.timeline is not None and self.presentation is not None
        metrics.inc("raylive_ingest_bytes_total", sum(len(m[2]) for m in batch), stream=self.name)
        metrics.inc("raylive_ingest_frames_total", sum(1 for m in batch if m[0] == VIDEO), stream=self.name)
        try:
            files = self.presentation.push(self.timeline.push(batch))
            self._feed_ladder()
            files += self._collect_ladder()
        except (UnsupportedMedia, ValueError) as exc:
            # Media we cannot package (a codec, a malformed or changed configuration): refuse the
            # publisher with the reason rather than fail the actor; other streams are unaffected.
            return self._fail(str(exc) if isinstance(exc, UnsupportedMedia) else f"bad media from publisher: {exc}")
        if files:
            self._write(files)
            self._update_status()
        if self.max_bitrate_kbps and self.timeline.stats.window_s() >= BITRATE_WINDOW_S:
            kbps = self.timeline.stats.rates()[0]
            if kbps > self.max_bitrate_kbps:
                return self._fail(f"ingest bitrate {kbps:.0f} kb/s is above this server's limit of {self.max_bitrate_kbps:.0f} kb/s")
        second = int(time.time())
        if second != self._health_second:  # one ingest-health row per second per stream
            self._health_second = second
            self._emit_health(second)
        return {"ok": True}

    def _emit_health(self, second: int) -> None:
        assert self.timeline is not None
        kbps, fps = self.timeline.stats.rates()
        late = self.timeline.stats.late_frames - self._late_reported  # in this second
        self._late_reported = self.timeline.stats.late_frames
        analytics.emit(
            self.redis,
            "ingest",
            ts=second,
            stream=self.name,
            bitrate_kbps=round(kbps, 1),
            fps=round(fps, 2),
            keyframe_interval_ms=self.timeline.stats.keyframe_interval_ms,
            late_frames=late,
            transcode_lag_s=self._tx_status.get("lag_s", 0.0),
            realtime_factor=self._tx_status.get("realtime_factor", {}),
        )

    def _fail(self, reason: str) -> dict[str, Any]:
        """Media we cannot package or a limit broken: the publisher is refused with the reason and
        the stream ends when it goes (no reconnect grace); other streams are unaffected."""
        log.warning("stream %s: %s", self.name, reason)
        self.lifecycle.fail(reason)
        return {"ok": False, "reason": reason}

    def release(self, token: str, reason: str) -> None:
        """The publisher is gone. A clean end (unpublish, server stop, kick, bad media) ends the
        playlists now; a dropped connection keeps them open for the reconnect grace, after which
        this actor's own clock ends them unless the publisher came back."""
        self._last_call = time.monotonic()
        if self.presentation is None:
            return
        decision = self.lifecycle.release(token, reason, self._last_call)
        if isinstance(decision, End):
            self._finalize(decision.reason)
        elif decision is not None:
            self._suspend_output(reason)
            log.info("stream %s: publisher dropped (%s); waiting %.0fs for it to reconnect", self.name, reason, decision.grace_s)

    def _suspend_output(self, reason: str) -> None:
        assert self.presentation is not None
        # The window stays whole through the reconnect grace (nothing is written meanwhile).
        ttl = self._segment_ttl() + math.ceil(self.lifecycle.grace_s)
        self._write(self._drain_ladder() + self.presentation.suspend(), ttl)
        self._expire_retained(ttl)
        self._set_state("reconnecting", dropped_at=time.time())

    def _finalize(self, reason: str) -> None:
        assert self.presentation is not None
        files = self._drain_ladder()
        self._stop_transcoder()
        self._unsubscribe_processors()
        files += self.presentation.finish()
        if not self.redis.exists(store.stream_key(self.name)):  # deleted through the API
            self._forget(reason)
            return
        ttl = self.hls.ended_ttl_s
        self._write(files, ttl)
        self._expire_retained(ttl)
        self._update_status()
        self._set_state("ended", ended_at=time.time(), end_reason=reason)
        self._ended = True
        pkg = self.presentation.packager
        analytics.emit(
            self.redis,
            "session",
            stream=self.name,
            event="end",
            reason=reason,
            node=socket.gethostname(),
            video_codec=pkg.sps.codec_string if pkg.sps else "",
            audio_codec=pkg.aac.codec_string if pkg.aac else "",
            resolution=f"{pkg.sps.width}x{pkg.sps.height}" if pkg.sps else "",
        )
        self._event("unpublish")
        log.info("stream %s: publish ended (%s)", self.name, reason)

    def _forget(self, reason: str) -> None:
        """The stream was deleted: no ended playlists stay behind, nor its live state."""
        store.delete_stream_files(self.media, self.name)
        self.redis.delete(store.live_key(self.name))
        self._ended = True
        analytics.emit(self.redis, "session", stream=self.name, event="end", reason=reason, node=socket.gethostname())
        self._event("unpublish")
        log.info("stream %s: publish ended (%s); the stream is deleted, its files are gone", self.name, reason)

    def _unsubscribe_processors(self) -> None:
        self.subscribers = {}
        try:
            ray.get_actor(REGISTRY_NAME, namespace=ray.get_runtime_context().namespace).on_unpublish.remote(self.name)
        except ValueError:
            pass

    def kick(self, reason: str) -> bool:
        """Disconnect the current publisher (revoked key, API stop); the gateway sees it on its next push."""
        return self.lifecycle.kick(reason)

    # -- ABR ladder ----------------------------------------------------------------------
    def _restore(self, epoch: str) -> tuple[LiveHlsPresentation, list[Any]] | None:
        """After Ray restarted this actor mid-publish: the playlists it was writing, if any."""
        state = self.redis.hget(store.live_key(self.name), "state")
        snap = self.media.get(store.snapshot_key(self.name))
        if state not in (b"live", b"reconnecting") or snap is None:
            return None
        self.ladder = self._stream_ladder()
        return LiveHlsPresentation.restore(json.loads(snap), epoch, ladder=True)

    def _stream_ladder(self) -> list[str]:
        raw = self.redis.hget(store.stream_key(self.name), "ladder")
        return json.loads(raw) if raw else self.transcode.ladder

    def _feed_ladder(self) -> None:
        assert self.presentation is not None
        items = self.presentation.take_ladder_input()
        self._feed_subscribers(items)
        if not items or self._ladder_off or not any(r != "source" for r in self.ladder):
            return
        if self.transcoder is None:
            configs = [i for i, item in enumerate(items) if isinstance(item, LadderConfig)]
            key = next((i for i, item in enumerate(items) if isinstance(item, LadderFrame) and item.keyframe), None)
            if configs:
                if not self._start_transcoder(items[configs[-1]]):  # type: ignore[arg-type]
                    return
                items = [LadderPeriod(self.presentation.epoch), *items[configs[-1] :]]
            elif self._tx_resume and key is not None and self._last_config is not None:
                # The rungs continue from this keyframe in a period of their own: new segment names,
                # an EXT-X-DISCONTINUITY in their playlists; the source is not interrupted.
                if not self._start_transcoder(self._last_config):
                    return
                items = [LadderPeriod(secrets.token_hex(4)), self._last_config, *items[key:]]
            else:
                return
            self._tx_resume = False
        self._tx_calls.append(self.transcoder.push.remote(items, time.time()))

    def _start_transcoder(self, config: LadderConfig) -> bool:
        assert self.presentation is not None
        sps = sps_from_avcc(config.avcc)
        plan = plan_ladder(self.ladder, self.transcode.renditions, sps.width, sps.height, config.source_kbps)
        if not plan:
            return False  # e.g. a 360p source with a 720p/480p/360p ladder: nothing below it
        options: dict[str, Any] = {
            "name": transcoder_name(self.name),
            "namespace": ray.get_runtime_context().namespace,
            "num_cpus": estimate_cpus(plan, sps.width, sps.height, config.frame_rate),
        }
        nvenc = self.transcode.encoder in ("auto", "nvenc") and ENCODERS["nvenc"] in av.codecs_available
        if nvenc and ray.cluster_resources().get("GPU", 0) > 0:
            options["num_gpus"] = self.transcode.gpus_per_stream
        try:
            self.transcoder = StreamTranscoderActor.options(**options).remote(self.name, self.ladder, self.transcode)
        except ValueError as exc:  # the name of a transcoder being killed is not free yet: next keyframe
            log.warning("stream %s: transcoder not started yet: %s", self.name, exc)
            self._tx_resume = True
            return False
        self._tx_ready = self.transcoder.ready.remote()
        self._tx_created = time.monotonic()
        self.presentation.expected = {r.name for r in plan}
        log.info("stream %s: starting transcoder for %s (%.2f CPUs)", self.name, ", ".join(r.name for r in plan), options["num_cpus"])
        return True

    def _collect_ladder(self) -> list[StoredFile]:
        if self.transcoder is None:
            return []
        if self._tx_ready is not None:
            if ray.wait([self._tx_ready], timeout=0)[0]:
                self._tx_ready = None
            elif time.monotonic() - self._tx_created > self.transcode.placement_timeout_s:
                self._ladder_failed("no CPU/GPU free for the transcoder within placement_timeout_s")
                return []
        files: list[StoredFile] = []
        if self._tx_calls:
            done = set(ray.wait(list(self._tx_calls), num_returns=len(self._tx_calls), timeout=0)[0])
            while self._tx_calls and self._tx_calls[0] in done:
                files += self._ladder_result(self._tx_calls.popleft())
        return files

    def _ladder_result(self, ref: Any, timeout: float | None = None) -> list[StoredFile]:
        assert self.presentation is not None
        try:
            result = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            self._ladder_failed("the transcoder did not finish in time")
            return []
        except RayError as exc:
            self._transcoder_lost(exc)
            return []
        files = self.presentation.add_rung_outputs(result["outputs"])
        for name in result["dropped"]:
            files += self.presentation.end_rendition(name)
        self._tx_status = {k: result[k] for k in ("encoder", "lag_s", "realtime_factor", "pid")}
        metrics.set_gauge("raylive_transcode_lag_seconds", result["lag_s"], stream=self.name)
        for rung, factor in result["realtime_factor"].items():
            metrics.set_gauge("raylive_transcode_realtime_factor", factor, stream=self.name, rendition=rung)
        return files

    def _drain_ladder(self) -> list[StoredFile]:
        """The publisher stopped: wait (bounded) for the ladder's last segments."""
        if self.transcoder is None or self._ladder_off:
            return []
        self._feed_ladder()
        self._tx_calls.append(self.transcoder.finish.remote())
        files: list[StoredFile] = []
        deadline = time.monotonic() + LADDER_DRAIN_TIMEOUT_S
        while self._tx_calls and self.transcoder is not None:
            files += self._ladder_result(self._tx_calls.popleft(), max(0.1, deadline - time.monotonic()))
        return files

    # -- processors and thumbnails (the same tap) -------------------------------------------
    def subscribe(self, name: str, handle: Any) -> None:
        self.subscribers[name] = _Subscriber(handle)

    def unsubscribe(self, name: str) -> None:
        self.subscribers.pop(name, None)

    def _subscribe_processors(self) -> None:
        try:
            registry = ray.get_actor(REGISTRY_NAME, namespace=ray.get_runtime_context().namespace)
            hosts = cast(dict[str, Any], ray.get(registry.on_publish.remote(self.name), timeout=10))
        except (ValueError, RayError, GetTimeoutError) as exc:
            log.warning("stream %s: processors not started: %s", self.name, exc)
            return
        self.subscribers = {name: _Subscriber(handle) for name, handle in hosts.items()}

    def _feed_subscribers(self, items: list[LadderInput]) -> None:
        for item in items:
            if isinstance(item, LadderConfig):
                self._last_config = item
            elif isinstance(item, LadderFrame) and item.keyframe and time.monotonic() - self._thumbnail_at >= THUMBNAIL_INTERVAL_S:
                self._thumbnail(item)
        if not items:
            return
        for sub in self.subscribers.values():
            while sub.calls and ray.wait([sub.calls[0]], timeout=0)[0]:
                try:
                    ray.get(sub.calls.popleft())
                except RayError:
                    sub.resync = True  # it restarted or failed: start it again from a keyframe
            batch = items
            frames = sum(1 for i in items if isinstance(i, LadderFrame))
            if len(sub.calls) >= MAX_SUBSCRIBER_BACKLOG:
                sub.resync, sub.dropped = True, sub.dropped + frames
                continue
            if sub.resync:
                key = next((n for n, i in enumerate(items) if isinstance(i, LadderFrame) and i.keyframe), None)
                if key is None or self._last_config is None or self.presentation is None:
                    sub.dropped += frames
                    continue
                sub.dropped += sum(1 for i in items[:key] if isinstance(i, LadderFrame))
                batch = [LadderPeriod(self.presentation.epoch), self._last_config, *items[key:]]
                sub.resync = False
            sub.calls.append(sub.handle.push.remote(batch, sub.dropped))
            sub.dropped = 0

    def _thumbnail(self, frame: LadderFrame) -> None:
        self._thumbnail_at = time.monotonic()
        if self._last_config is None:
            return
        try:
            jpeg = keyframe_jpeg(self._last_config.avcc, frame.data)
        except (ValueError, OSError) as exc:
            log.info("stream %s: no thumbnail from this keyframe: %s", self.name, exc)
            return
        self.media.set(store.file_key(self.name, "thumbnail.jpg"), jpeg, ex=self._segment_ttl())

    def _transcoder_lost(self, exc: RayError) -> None:
        """The transcoder died (its process or node) or failed a batch: a new one takes over at the
        next keyframe, a few times per publish; after that the source is served alone."""
        if self._tx_restarts >= MAX_TRANSCODER_RESTARTS:
            self._ladder_failed(f"transcoder failed {self._tx_restarts + 1} times, the last: {type(exc).__name__}: {exc}")
            return
        self._tx_restarts += 1
        log.warning("stream %s: transcoder lost (%s); a new one starts at the next keyframe", self.name, type(exc).__name__)
        self._stop_transcoder()
        self._tx_resume = True

    def _ladder_failed(self, why: str) -> None:
        log.warning("stream %s: %s; serving the source rendition only", self.name, why)
        self._stop_transcoder()
        self._ladder_off = True
        if self.presentation is not None:
            self.presentation.expected = set()

    def _stop_transcoder(self) -> None:
        if self.transcoder is not None:
            ray.kill(self.transcoder)
        self.transcoder = self._tx_ready = None
        self._tx_calls.clear()
        self._tx_status = {}

    # -- Redis ---------------------------------------------------------------------------
    def _segment_ttl(self) -> int:
        """How long a file written now stays fetchable: `hls.segment_ttl_s`, or by default what
        the HLS spec asks (a segment stays for its duration plus the playlist's after it leaves
        it), from the window as it is. Was a fixed 120 s: ≈ 10x what playlists reference."""
        if self.hls.segment_ttl_s:
            return self.hls.segment_ttl_s
        window_s = self.hls.window_segments * self.hls.target_duration_s
        if self.presentation is not None:
            window_s = max(window_s, self.presentation.longest_playlist_s())
        return math.ceil(2 * window_s + self.hls.target_duration_s) + SEGMENT_TTL_MARGIN_S

    def _expire_retained(self, ttl: int) -> None:
        assert self.presentation is not None
        with self.media.pipeline(transaction=False) as p:
            for path in self.presentation.retained_paths():
                p.expire(store.file_key(self.name, path), ttl)
            self._execute_media(p)

    def _execute_media(self, p: redis.client.Pipeline) -> bool:
        """A media write that fails (the media Redis full of keys it cannot evict, or away)
        costs this stream its output for the moment, never the stream or anyone else's."""
        try:
            p.execute()
            return True
        except redis.RedisError as exc:
            self._media_errors += 1
            if self._media_errors in (1, 10) or self._media_errors % 100 == 0:
                log.warning("stream %s: media write failed (%d so far): %s", self.name, self._media_errors, exc)
            return False

    def _write(self, files: list[StoredFile], ttl: int | None = None) -> None:
        ttl = ttl or self._segment_ttl()
        with self.media.pipeline(transaction=False) as p:
            # Files arrive in dependency order (segment before the playlist naming it).
            for f in files:
                p.set(store.file_key(self.name, f.path), f.data, ex=ttl)
            if self.presentation is not None and any(f.path.endswith("index.m3u8") for f in files):
                p.set(store.snapshot_key(self.name), json.dumps(self.presentation.snapshot()), ex=ttl)
                for path in self.presentation.long_lived_paths():
                    p.expire(store.file_key(self.name, path), ttl)
            if not self._execute_media(p):
                return
        now = time.time()
        for f in files:
            if f.media_end is not None:
                rendition = f.path.split("/", 1)[0]
                metrics.inc("raylive_segments_total", stream=self.name, rendition=rendition)
                metrics.observe("raylive_segment_latency_seconds", max(0.0, now - f.media_end), rendition=rendition)

    def _event(self, event: str) -> None:
        self.redis.publish(store.EVENTS_CHANNEL, json.dumps({"event": event, "name": self.name, "time": time.time()}))

    def _set_state(self, state: str, **fields: Any) -> None:
        self.redis.hset(store.live_key(self.name), mapping={"state": state, **{k: str(v) for k, v in fields.items()}})

    def _update_status(self) -> None:
        assert self.timeline is not None and self.presentation is not None
        kbps, fps = self.timeline.stats.rates()
        fields: dict[str, Any] = {"bitrate_kbps": round(kbps, 1), "fps": round(fps, 2)}
        pkg = self.presentation.packager
        if pkg.sps is not None:
            fields.update(video_codec=pkg.sps.codec_string, resolution=f"{pkg.sps.width}x{pkg.sps.height}")
        if pkg.aac is not None:
            fields.update(audio_codec=pkg.aac.codec_string, sample_rate=pkg.aac.sample_rate)
        fields["keyframe_interval_ms"] = self.timeline.stats.keyframe_interval_ms
        if self._tx_status:
            fields.update(
                encoder=self._tx_status["encoder"],
                transcode_lag_s=self._tx_status["lag_s"],
                transcode_realtime_factor=json.dumps(self._tx_status["realtime_factor"]),
                transcoder_pid=self._tx_status["pid"],
                transcoder_restarts=self._tx_restarts,
            )
        fields["renditions"] = json.dumps(
            {r.name: {"bandwidth": r.peak_bps, "average_bandwidth": r.average_bps} for r in self.presentation.renditions.values()}
        )
        self.redis.hset(store.live_key(self.name), mapping={k: str(v) for k, v in fields.items()})


# A token CPU share, because Ray places an actor that asks for no resources on a random node,
# whatever its soft node affinity (measured: 6 of 12 on the wrong node; ray-project/ray#25360).
StreamIngestActor = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0.01)(StreamIngest)
