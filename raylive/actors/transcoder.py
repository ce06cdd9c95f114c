"""`StreamTranscoder`: the Ray actor that runs one stream's ABR ladder.

Its `StreamIngest` creates it (named `stream:NAME:transcoder`, sized by the ladder's cost, with a
GPU share when NVENC will be used) and sends it the compressed source frames; the actor decodes
once, encodes every rung and returns CMAF segments. Compressed frames cross the actor boundary,
not raw ones (a 720p frame is 1.4 MB raw, ≈ 10 KB compressed), and ingest never waits for it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import ray

from ..runtime.ladder import LadderInput, RungOutput
from ..settings import TranscodeSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TranscodeReply:
    """The answer to one batch: rung segments in order, rungs given up, and how the ladder keeps up."""

    outputs: list[RungOutput]
    dropped: list[str]
    lag_s: float  # the batch's wait in the queue plus its encoding
    realtime_factor: dict[str, float]  # per rung: media s encoded per wall s
    encoder: str
    pid: int


class StreamTranscoder:
    def __init__(self, stream: str, ladder: list[str], settings: TranscodeSettings) -> None:
        self.stream = stream
        self.max_lag_s = settings.max_lag_s
        from ..runtime.transcode import LadderTranscoder  # PyAV: in this actor, never in the stream actor that defines it

        gpu_visible = bool(ray.get_gpu_ids())
        self.ladder = LadderTranscoder(ladder, settings.renditions, settings.encoder, settings.preset, gpu_visible)
        self._last_drop = 0.0

    def ready(self) -> str:
        return self.ladder.codec

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def push(self, items: list[LadderInput], sent_at: float) -> TranscodeReply:
        outputs = self.ladder.push(items)
        # How long this batch waited in the queue plus its own encoding: past the bound, the
        # ladder cannot keep up, so shed the most expensive rung instead of growing the queue.
        lag_s = time.time() - sent_at
        dropped: list[str] = []
        now = time.monotonic()
        if lag_s > self.max_lag_s and now - self._last_drop > self.max_lag_s and len(self.ladder.rungs) > 0:
            name = self.ladder.drop_most_expensive()
            if name is not None:
                log.warning("stream %s: transcoder %.1fs behind real time; dropping rung %s", self.stream, lag_s, name)
                dropped.append(name)
                self._last_drop = now
        return self._result(outputs, lag_s, dropped)

    def finish(self) -> TranscodeReply:
        return self._result(self.ladder.finish(), 0.0, [])

    def _result(self, outputs: list[RungOutput], lag_s: float, dropped: list[str]) -> TranscodeReply:
        return TranscodeReply(outputs, dropped, round(lag_s, 3), self.ladder.realtime_factors(), self.ladder.codec, os.getpid())


StreamTranscoderActor = ray.remote(max_restarts=0, max_task_retries=0)(StreamTranscoder)
