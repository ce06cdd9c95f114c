"""`LadderSupervisor`: the stream actor's ABR ladder — one `StreamTranscoder` actor fed from the tap.

It starts the transcoder at the first configuration (Ray places it with the CPUs, or a GPU
share, its rungs need), feeds it through a `TapQueue` (at most `MAX_IN_FLIGHT` batches
unanswered: a transcoder that far behind restarts at the next keyframe in a new period rather
than pile up the stream's media), collects the rung segments it returns, and replaces it when it
dies, a few times per publish; after that, or when there is no room for it, the source is served
alone. The source never waits for any of this.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from .. import metrics
from ..names import transcoder_name
from ..runtime.ladder import ENCODERS, LadderConfig, LadderInput, LadderPeriod, RungOutput, estimate_cpus, plan_ladder
from ..runtime.packaging.live import LiveHlsPresentation, StoredFile
from ..runtime.taps import TapQueue
from ..runtime.video import describe
from ..settings import TranscodeSettings
from .transcoder import StreamTranscoderActor, TranscodeReply

log = logging.getLogger(__name__)
MAX_TRANSCODER_RESTARTS = 3  # per publish
LADDER_DRAIN_TIMEOUT_S = 10.0
# Batches sent and not yet answered: 16 x 0.25 s flushes = 4 s of media, rung dropping
# (`transcode.max_lag_s`, 4 s) acts first; this bounds what a stuck transcoder holds.
MAX_IN_FLIGHT = 16
WATCH_TIMEOUT_S = 2.0  # how long the watcher waits for one batch's rungs


class LadderSupervisor:
    def __init__(
        self, stream: str, transcode: TranscodeSettings, add_outputs: Callable[[list[RungOutput]], list[StoredFile]] | None = None
    ) -> None:
        self.stream = stream
        self.transcode = transcode
        self.add_outputs = add_outputs  # the stream actor's way to package rung outputs (default: the presentation's)
        self.ladder: list[str] = transcode.ladder
        self.transcoder: Any = None  # StreamTranscoder handle while a ladder runs
        self.status: TranscodeReply | None = None  # the transcoder's last report
        self.restarts = 0  # transcoders lost during this publish (died, or failed a batch)
        self._off = False  # no room or a failure: this publish serves the source only
        self._resume = False  # start a new transcoder at the next keyframe
        self._ready: Any = None  # its `ready()` ref until Ray has placed it
        self._created = 0.0
        self._calls: deque[Any] = deque()  # outstanding `push` refs, oldest first
        self.sent: queue.SimpleQueue[Any] = queue.SimpleQueue()  # each push ref, for the stream actor's watcher
        self._queue = TapQueue(MAX_IN_FLIGHT)
        self._period = ""  # the epoch the transcoder's next resync starts

    def new_publish(self, ladder: list[str]) -> None:
        self.stop()
        self.ladder = ladder
        self._off, self.restarts, self._resume = False, 0, False

    def feed(self, items: list[LadderInput], presentation: LiveHlsPresentation, config: LadderConfig | None) -> None:
        """Send the tap's new items (`config`: the stream's latest configuration)."""
        if not items or self._off or not any(r != "source" for r in self.ladder):
            return
        if self.transcoder is None:
            started_here = any(isinstance(i, LadderConfig) for i in items)
            if not (started_here or self._resume) or config is None or not self._start(config, presentation):
                return
            # Rungs continue in the stream's period at a first start, in one of their own (new
            # segment names, an EXT-X-DISCONTINUITY) after a lost transcoder.
            self._period = presentation.epoch if not self._resume else secrets.token_hex(4)
            self._queue, self._resume = TapQueue(MAX_IN_FLIGHT), False
        batch = self._queue.offer(items, self._period, config)
        dropped = self._queue.take_dropped()
        if dropped:
            metrics.inc("raylive_tap_dropped_frames_total", dropped, stream=self.stream, consumer="transcoder")
        if batch is None:
            return
        if isinstance(batch[0], LadderPeriod):
            self._period = secrets.token_hex(4)  # a later resync starts another period
        ref = self.transcoder.push.remote(batch, time.time())
        self._calls.append(ref)
        self.sent.put(ref)

    def watch(self, collect: Callable[[], object]) -> None:
        """A thread of the stream actor's: the rungs of a batch are ready a moment after its push;
        `collect` them then (a call to the actor, so on its one thread), not at the next push a part
        later (that added 0.2 s to every rung part)."""
        while True:
            ref = self.sent.get()
            try:
                if ray.wait([ref], timeout=WATCH_TIMEOUT_S)[0] and self.sent.empty():
                    collect()
            except RayError:
                pass  # a lost transcoder: the next push or collect finds out

    def _start(self, config: LadderConfig, presentation: LiveHlsPresentation) -> bool:
        sps = describe(config.video)
        plan = plan_ladder(self.ladder, self.transcode.renditions, sps.width, sps.height, config.source_kbps, sps.codec)
        if not plan:
            return False  # e.g. a 360p source with a 720p/480p/360p ladder: nothing below it
        options: dict[str, Any] = {
            "name": transcoder_name(self.stream),
            "namespace": ray.get_runtime_context().namespace,
            "num_cpus": estimate_cpus(plan, sps.width, sps.height, config.frame_rate),
        }
        import av  # here only: a stream that is not transcoded never loads PyAV

        nvenc = self.transcode.encoder in ("auto", "nvenc") and ENCODERS["nvenc"] in av.codecs_available
        if nvenc and ray.cluster_resources().get("GPU", 0) > 0:
            options["num_gpus"] = self.transcode.gpus_per_stream
        try:
            self.transcoder = StreamTranscoderActor.options(**options).remote(self.stream, self.ladder, self.transcode)
        except ValueError as exc:  # the name of a transcoder being killed is not free yet: next keyframe
            log.warning("stream %s: transcoder not started yet: %s", self.stream, exc)
            self._resume = True
            return False
        self._ready = self.transcoder.ready.remote()
        self._created = time.monotonic()
        presentation.expected = {r.name for r in plan}
        log.info("stream %s: starting transcoder for %s (%.2f CPUs)", self.stream, ", ".join(r.name for r in plan), options["num_cpus"])
        return True

    def collect(self, presentation: LiveHlsPresentation) -> list[StoredFile]:
        """The rung segments of the batches answered so far, in order (never waits)."""
        if self.transcoder is None:
            return []
        if self._ready is not None:
            if ray.wait([self._ready], timeout=0)[0]:
                self._ready = None
            elif time.monotonic() - self._created > self.transcode.placement_timeout_s:
                self._failed("no CPU/GPU free for the transcoder within placement_timeout_s", presentation)
                return []
        files: list[StoredFile] = []
        if self._calls:
            done = set(ray.wait(list(self._calls), num_returns=len(self._calls), timeout=0)[0])
            while self._calls and self._calls[0] in done:
                files += self._result(self._calls.popleft(), presentation)
        return files

    def drain(self, items: list[LadderInput], presentation: LiveHlsPresentation, config: LadderConfig | None) -> list[StoredFile]:
        """The publisher stopped: the last items, then wait (bounded) for the ladder's last segments."""
        if self.transcoder is None or self._off:
            return []
        self.feed(items, presentation, config)
        self._calls.append(self.transcoder.finish.remote())
        files: list[StoredFile] = []
        deadline = time.monotonic() + LADDER_DRAIN_TIMEOUT_S
        while self._calls and self.transcoder is not None:
            files += self._result(self._calls.popleft(), presentation, max(0.1, deadline - time.monotonic()))
        return files

    def _result(self, ref: Any, presentation: LiveHlsPresentation, timeout: float | None = None) -> list[StoredFile]:
        self._queue.answered(True)
        try:
            result: TranscodeReply = ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            self._failed("the transcoder did not finish in time", presentation)
            return []
        except RayError as exc:
            self._lost(exc, presentation)
            return []
        files = self.add_outputs(result.outputs) if self.add_outputs is not None else presentation.add_rung_outputs(result.outputs)
        for name in result.dropped:
            files += presentation.end_rendition(name)
        self.status = dataclasses.replace(result, outputs=[], dropped=[])
        metrics.set_gauge("raylive_transcode_lag_seconds", result.lag_s, stream=self.stream)
        for rung, factor in result.realtime_factor.items():
            metrics.set_gauge("raylive_transcode_realtime_factor", factor, stream=self.stream, rendition=rung)
        return files

    def _lost(self, exc: RayError, presentation: LiveHlsPresentation) -> None:
        """The transcoder died (its process or node) or failed a batch: a new one takes over at the
        next keyframe, a few times per publish; after that the source is served alone."""
        if self.restarts >= MAX_TRANSCODER_RESTARTS:
            self._failed(f"transcoder failed {self.restarts + 1} times, the last: {type(exc).__name__}: {exc}", presentation)
            return
        self.restarts += 1
        log.warning("stream %s: transcoder lost (%s); a new one starts at the next keyframe", self.stream, type(exc).__name__)
        self.stop()
        self._resume = True

    def _failed(self, why: str, presentation: LiveHlsPresentation) -> None:
        log.warning("stream %s: %s; serving the source rendition only", self.stream, why)
        self.stop()
        self._off = True
        presentation.expected = set()

    def stop(self) -> None:
        if self.transcoder is not None:
            ray.kill(self.transcoder)
        self.transcoder = self._ready = None
        self._calls.clear()
        self.status = None
