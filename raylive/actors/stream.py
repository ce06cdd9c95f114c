"""`StreamIngest`: the one Ray actor that owns a live stream's timeline and packaging.

Created by the gateway on publish and named `stream:NAME:ingest` so the Ray dashboard shows it.
It takes batches of RTMP media messages (one actor call per flush interval, not per packet),
and writes segments and playlists to Redis, from where any playback replica serves them.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray

from .. import metrics, store
from ..names import actor_name
from ..runtime.ingest import IngestTimeline, RawMessage, UnsupportedMedia
from ..runtime.lifecycle import NOT_CURRENT_PUBLISHER, AskHolder, End, PublisherLifecycle, Refuse
from ..runtime.packaging.live import LiveHlsPresentation
from ..runtime.rtmp.chunk import VIDEO
from ..settings import HlsSettings, RecordingSettings, TranscodeSettings
from .ladder import LadderSupervisor
from .stream_consumers import StreamConsumers
from .stream_output import StreamOutput
from .stream_restart import holder_present, restored_presentation
from .taps import MediaTap

log = logging.getLogger(__name__)


CLOCK_S = 1.0  # the actor's clock: a tick when nothing else ran for this long (`PublisherLifecycle.tick`)
# An ended stream's actor exits this long after the end (nobody claimed it meanwhile): each one
# left running held ≈ 85 MB and a GCS entry for good. A publisher that restarts its encoder at
# once still finds it warm; later ones get a new actor (≈ 1 CPU-s).
ENDED_EXIT_S = 10.0
BITRATE_WINDOW_S = 4.0  # a publisher is held to rtmp.max_bitrate_kbps over this much wall time


@dataclass(frozen=True, slots=True)
class StreamReply:
    """The stream actor's answer to a gateway's `claim` or `push`: go on, or close the publisher
    with `reason` (NOT_CURRENT_PUBLISHER: this actor does not know the connection, e.g. restarted)."""

    ok: bool
    reason: str = ""
    epoch: str = ""  # claim: the period the publisher's media starts


class StreamIngest(StreamConsumers):
    def __init__(
        self,
        name: str,
        redis_url: str,
        hls: HlsSettings,
        reconnect_grace_s: float = 10.0,
        transcode: TranscodeSettings | None = None,
        max_bitrate_kbps: float = 0,
        recording: RecordingSettings | None = None,
        recording_url: str = "",
    ) -> None:
        self.max_bitrate_kbps = max_bitrate_kbps
        self.name = name
        self.hls = hls
        self.transcode = transcode or TranscodeSettings()
        self.ladder = LadderSupervisor(name, self.transcode, self._add_rung_outputs)
        self.tap = MediaTap(name)  # processors
        self.out = StreamOutput(name, redis_url, hls, recording, recording_url)
        self.redis = self.out.redis
        self._ended = False  # the last publish ended (the actor exits after ENDED_EXIT_S)
        self.lifecycle = PublisherLifecycle(name, reconnect_grace_s)
        self.timeline: IngestTimeline | None = None
        self.presentation: LiveHlsPresentation | None = None
        self.started_at = 0.0
        if self.out.status().state in ("live", "reconnecting"):
            # Ray restarted this actor mid-publish: the publisher may reclaim the stream (its
            # gateway retries); if nobody does within the grace, the clock ends it.
            self.lifecycle.suspended_after_restart(time.monotonic())
        self._last_call = time.monotonic()
        threading.Thread(target=self._clock, name="stream-clock", daemon=True).start()
        collect = lambda: ray.get_runtime_context().current_actor.collect_ladder.remote()  # noqa: E731 - on this actor's thread
        threading.Thread(target=self.ladder.watch, args=(collect,), name="stream-ladder", daemon=True).start()

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
        if self.out.recorder is not None and not self.out.recorder.idle():
            self._ended = True  # its last segments are still being stored: ask again later
            return
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
            self.out.resume_recording()
        self._finalize(decision.reason)

    def claim(self, token: str, peer: str, gateway: str = "") -> StreamReply:
        now = self._last_call = time.monotonic()
        decision = self.lifecycle.claim(token, gateway, now)
        if isinstance(decision, AskHolder):
            decision = self.lifecycle.claim(token, gateway, now, holder_present=holder_present(decision))
            assert not isinstance(decision, AskHolder)  # answered
        if isinstance(decision, Refuse):
            return StreamReply(False, decision.reason)
        if decision.replaced is not None:
            # A half-open connection (the encoder reconnected first) or one whose gateway is gone:
            # treat it as dropped and let the new publisher continue its playlists.
            log.warning("stream %s: replacing a publisher that is not there any more", self.name)
            self._suspend_output("replaced by a new publisher")
        self.timeline = IngestTimeline()
        self._ended = False
        epoch = secrets.token_hex(4)
        restored = self._restore(epoch) if self.presentation is None else None
        if restored is not None:
            self.presentation, replay = restored
            self.out.resume_recording()  # before this period's first write: its init goes to the recording too
            self.out.write(self.out.recover_open_segments(self.presentation) + self.presentation.push(replay), self.presentation)
            self.started_at = self.out.status().started_at or time.time()
            log.warning("stream %s: continuing its playlists after a restart of this actor (%s)", self.name, peer)
            self.tap.subscribe_processors()
        elif decision.resume and self.presentation is not None:
            self.presentation.resume(epoch)  # same playlists, after a discontinuity
            log.info("stream %s: publisher reconnected from %s; continuing the playlists", self.name, peer)
            self.out.webhook("stream.resumed", client=peer)
        else:
            self.ladder.new_publish(self._stream_ladder())
            self.presentation = LiveHlsPresentation(
                epoch,
                int(self.hls.target_duration_s * 1000),
                self.hls.window_segments,
                ladder=True,  # the tap also feeds processors
                advertise_source="source" in self.ladder.ladder,
                part_ms=int(self.hls.part_duration_s * 1000),
            )
            self.started_at = time.time()
            self.out.new_publish()
            self.out.start_recording(self.started_at)
            log.info("stream %s: publish started from %s", self.name, peer)
            self.out.session_event("start")
            self.out.webhook("stream.published", client=peer, node=socket.gethostname())
            self.tap.subscribe_processors()
        self.out.set_state(
            "live",
            started_at=self.started_at,
            node=socket.gethostname(),
            node_id=ray.get_runtime_context().get_node_id(),
            actor=actor_name(self.name),
            pid=os.getpid(),
            epoch=epoch,
        )
        self.out.event("publish")
        return StreamReply(True, epoch=epoch)

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def push(self, token: str, batch: list[RawMessage]) -> StreamReply:
        self._last_call = time.monotonic()
        refused = NOT_CURRENT_PUBLISHER if self.timeline is None or self.presentation is None else None
        refused = refused or self.lifecycle.push(token, self._last_call)
        if refused:
            return StreamReply(False, refused)
        assert self.timeline is not None and self.presentation is not None
        metrics.inc("raylive_ingest_bytes_total", sum(len(m[2]) for m in batch), stream=self.name)
        metrics.inc("raylive_ingest_frames_total", sum(1 for m in batch if m[0] == VIDEO), stream=self.name)
        try:
            files = self.presentation.push(self.timeline.push(batch), now=time.time())
            self._feed_tap()
            files += self.ladder.collect(self.presentation)
        except (UnsupportedMedia, ValueError) as exc:
            # Media we cannot package (a codec, a malformed or changed configuration): refuse the
            # publisher with the reason rather than fail the actor; other streams are unaffected.
            return self._fail(str(exc) if isinstance(exc, UnsupportedMedia) else f"bad media from publisher: {exc}")
        if files:
            self.out.write(files, self.presentation)
        if self.max_bitrate_kbps and self.timeline.stats.window_s() >= BITRATE_WINDOW_S:
            kbps = self.timeline.stats.rates()[0]
            if kbps > self.max_bitrate_kbps:
                return self._fail(f"ingest bitrate {kbps:.0f} kb/s is above this server's limit of {self.max_bitrate_kbps:.0f} kb/s")
        self.out.each_second(self.timeline, self.presentation, self.ladder.status, self.ladder.restarts)
        return StreamReply(True)

    def _fail(self, reason: str) -> StreamReply:
        """Media we cannot package or a limit broken: the publisher is refused with the reason and
        the stream ends when it goes (no reconnect grace); other streams are unaffected."""
        log.warning("stream %s: %s", self.name, reason)
        self.lifecycle.fail(reason)
        return StreamReply(False, reason)

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
        ttl = self.out.segment_ttl(self.presentation) + math.ceil(self.lifecycle.grace_s)
        self.out.write(self._drain_ladder() + self.presentation.suspend(), self.presentation, ttl)
        self.out.expire_retained(self.presentation, ttl)
        self.out.set_state("reconnecting", dropped_at=time.time())
        self.out.webhook("stream.reconnecting", reason=reason, grace_s=self.lifecycle.grace_s)

    def _finalize(self, reason: str) -> None:
        assert self.presentation is not None
        files = self._drain_ladder()
        self.ladder.stop()
        self.tap.unsubscribe_processors()
        files += self.presentation.finish()
        if not self.redis.exists(store.stream_key(self.name)):  # deleted through the API
            self._forget(reason)
            return
        ttl = self.hls.ended_ttl_s
        self.out.write(files, self.presentation, ttl)
        self.out.expire_retained(self.presentation, ttl)
        assert self.timeline is not None
        self.out.update_status(self.timeline, self.presentation, self.ladder.status, self.ladder.restarts)
        self.out.end_recording()
        self.out.set_state("ended", ended_at=time.time(), end_reason=reason)
        self._ended = True
        self.out.session_event("end", reason, self.presentation)
        self.out.webhook("stream.ended", reason=reason)
        self.out.event("unpublish")
        log.info("stream %s: publish ended (%s)", self.name, reason)

    def _forget(self, reason: str) -> None:
        """The stream was deleted: no ended playlists stay behind, nor its live state."""
        self.out.end_recording()
        self.out.forget()
        self._ended = True
        self.out.session_event("end", reason)
        self.out.webhook("stream.ended", reason=reason, deleted=True)
        self.out.event("unpublish")
        log.info("stream %s: publish ended (%s); the stream is deleted, its files are gone", self.name, reason)

    def kick(self, reason: str) -> bool:
        """Disconnect the current publisher (revoked key, API stop); the gateway sees it on its next push."""
        return self.lifecycle.kick(reason)

    def _restore(self, epoch: str) -> tuple[LiveHlsPresentation, list[Any]] | None:
        """After Ray restarted this actor mid-publish: the playlists it was writing, if any."""
        restored = restored_presentation(self.out, epoch)
        if restored is not None:
            self.ladder.new_publish(self._stream_ladder())
        return restored

    def _stream_ladder(self) -> list[str]:
        return store.stream_ladder(self.redis, self.name) or self.transcode.ladder


# A token CPU share, because Ray places an actor that asks for no resources on a random node,
# whatever its soft node affinity (measured: 6 of 12 on the wrong node; ray-project/ray#25360).
StreamIngestActor = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0.01)(StreamIngest)
