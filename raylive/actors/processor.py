"""Researchers' processors as Ray actors.

`ProcessorHost` runs one user `Processor` on one stream: the stream's `StreamIngest` sends it the
compressed video it taps anyway (never raw frames), the host decodes, samples `fps` frames per
second at the rendition's height and feeds them to `process()` on its own thread through a
two-frame queue; a slow processor drops frames (counted), it never slows ingest. A dict `process`
returns goes to ClickHouse (`processor_events`) and to the `rl:events` channel (WebSocket). With
`output`, what it returns are frames: they become a rendition of the stream named after the
processor (`runtime/frame_out.py` times and encodes them; the stream actor lists them).

What is attached where is the `ProcessorRegistry`'s (actors/processor_registry.py).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import redis

from .. import analytics, metrics, store
from ..names import REGISTRY_NAME, actor_name
from ..runtime.frame_out import ProcessedVideo, output_image
from ..runtime.frames import FrameSampler
from ..runtime.ladder import LadderInput

log = logging.getLogger(__name__)

QUEUE_FRAMES = 2
# A processor that makes video gets a part's frames at once (≈ 6 at 30 fps): two would drop four of
# them even for a fast processor. It gets those within `max_delay_s`; older ones are skipped.
OUTPUT_QUEUE_FRAMES = 16


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@dataclass(frozen=True)
class VideoOutput:
    """A processor whose frames become a rendition: its bitrate (0: by its size) and how long a
    frame may wait for the processor before the latest output is repeated in its place."""

    video_kbps: int = 0
    max_delay_s: float = 0.5


class ProcessorHost:
    def __init__(
        self,
        stream: str,
        name: str,
        cls: type,
        kwargs: dict[str, Any],
        fps: float,
        height: int | None,
        max_errors: int,
        redis_url: str,
        output: VideoOutput | None = None,
    ) -> None:
        self.stream, self.name, self.max_errors = stream, name, max_errors
        self.redis = redis.Redis.from_url(redis_url)
        self.processor = cls(**kwargs)
        gpu = bool(ray.get_gpu_ids())  # asked for num_gpus: decode there too (NVDEC, else the CPU)
        self.video = ProcessedVideo(name, output.video_kbps, output.max_delay_s, fps, height, gpu) if output else None
        self.sampler = self.video.sampler if self.video is not None else FrameSampler(fps, height, gpu)
        self._stream_actor: Any = None
        self.queue: deque[tuple[float, np.ndarray]] = deque()
        self.cond = threading.Condition()
        self.processed = self.dropped = self.errors = self.consecutive_errors = 0
        self.dropped_upstream = 0  # frames ingest skipped while this host was behind
        self.detached = ""
        setup = getattr(self.processor, "setup", None)
        if callable(setup):
            setup()
        threading.Thread(target=self._run, name=f"processor-{name}", daemon=True).start()

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def push(self, items: list[LadderInput], dropped_upstream: int = 0) -> int:
        self.dropped_upstream += dropped_upstream
        if self.video is not None:
            return self._push_with_output(items)
        frames = self.sampler.push(items)
        with self.cond:
            for f in frames:
                self._enqueue(f)
            self.cond.notify()
        return len(frames)

    def _enqueue(self, frame: tuple[float, np.ndarray]) -> None:
        if len(self.queue) >= (QUEUE_FRAMES if self.video is None else OUTPUT_QUEUE_FRAMES):
            ts, _ = self.queue.popleft()  # the processor is behind: keep the newest frames
            self.dropped += 1
            if self.video is not None:
                self.video.skipped(round(ts * 1000))
        self.queue.append(frame)

    def _push_with_output(self, items: list[LadderInput]) -> int:
        assert self.video is not None
        with self.cond:
            out, given = self.video.push(items, time.monotonic())
            for frame in given:
                self._enqueue(frame)
            self._send(out + self.video.flush(time.monotonic()))
            self.cond.notify()
        return len(given)

    def _send(self, outputs: list[Any]) -> None:
        """The output rendition's new files to the stream's actor (in order: sent under the lock)."""
        assert self.video is not None
        for delay in self.video.new_delays:
            metrics.observe("raylive_processor_delay_seconds", delay, processor=self.name)
        self.video.new_delays.clear()
        if not outputs:
            return
        if self._stream_actor is None:
            self._stream_actor = ray.get_actor(actor_name(self.stream), namespace=ray.get_runtime_context().namespace)
        self._stream_actor.processor_output.remote(self.name, outputs)

    def stats(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "processor": self.name,
            "pid": os.getpid(),
            "processed": self.processed,
            "dropped": self.dropped + self.dropped_upstream,
            "errors": self.errors,
            "decoded": self.sampler.decoded,
            "undecodable": self.sampler.undecodable,
            "detached": self.detached,
            **(self.video.stats() if self.video is not None else {}),
        }

    def _run(self) -> None:
        while not self.detached:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                ts, frame = self.queue.popleft()
                if self.video is not None and self.video.overdue(round(ts * 1000), time.monotonic()):
                    self.video.skipped(round(ts * 1000))  # already repeated in its place: not worth the work
                    self.dropped += 1
                    continue
            try:
                result = self.processor.process(frame, ts)
                image = output_image(result) if self.video is not None else None
            except Exception as exc:  # noqa: BLE001 - a processor bug must not take the stream down
                self._answered(ts, None)
                self.errors += 1
                self.consecutive_errors += 1
                log.warning("processor %s on stream %s failed on the frame at %.3f s: %r", self.name, self.stream, ts, exc)
                if self.consecutive_errors >= self.max_errors:
                    self._detach(f"{self.consecutive_errors} consecutive errors, last: {exc!r}")
                continue
            self.consecutive_errors = 0
            self.processed += 1
            if self.video is not None:
                self._answered(ts, image)
            elif isinstance(result, dict):
                self._publish(ts, result)

    def _answered(self, ts: float, image: Any) -> None:
        """The processor is done with the frame at `ts` (`image`: its output, if any)."""
        if self.video is None:
            return
        with self.cond:
            if image is None:
                self.video.skipped(round(ts * 1000))
            else:
                self.video.result(round(ts * 1000), image)
            self._send(self.video.flush(time.monotonic()))

    def _publish(self, ts: float, result: dict[str, Any]) -> None:
        payload = json.dumps(_jsonable(result), separators=(",", ":"))
        with self.redis.pipeline(transaction=False) as p:
            analytics.emit(p, "processor", stream=self.stream, processor=self.name, frame_ts=ts, payload=payload)
            event = {"event": "processor", "name": self.stream, "processor": self.name, "frame_ts": ts, "result": json.loads(payload)}
            p.publish(store.EVENTS_CHANNEL, json.dumps(event))
            p.execute()

    def _detach(self, reason: str) -> None:
        self.detached = reason
        log.warning("processor %s on stream %s detached: %s", self.name, self.stream, reason)
        event = {"event": "processor_detached", "name": self.stream, "processor": self.name, "reason": reason, "time": time.time()}
        self.redis.publish(store.EVENTS_CHANNEL, json.dumps(event))
        registry = ray.get_actor(REGISTRY_NAME, namespace=ray.get_runtime_context().namespace)
        registry.detach.remote(self.name, self.stream, reason)


ProcessorHostActor = ray.remote(max_restarts=-1, max_task_retries=0)(ProcessorHost)


@dataclass
class ProcessorSpec:
    name: str
    cls: type
    kwargs: dict[str, Any]
    fps: float
    rendition: str
    num_cpus: float
    num_gpus: float
    max_errors: int
    streams: set[str] | None  # None: every stream, now and later
    output: VideoOutput | None = None  # its frames become the rendition `name`
    hosts: dict[str, Any] = field(default_factory=dict)  # stream -> ProcessorHost handle
    detached: dict[str, str] = field(default_factory=dict)  # stream -> why
