"""`MediaTap`: the stream actor's fan-out of its compressed media (`runtime/taps.py`) to the
processor hosts attached to it, each through its own `TapQueue`. The transcoder is fed from the
same items (`ladder.py`). Nothing here decodes: thumbnails are made on request by the playback
app from a stored segment, so a stream actor never loads PyAV."""

from __future__ import annotations

import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from .. import metrics
from ..names import REGISTRY_NAME
from ..runtime.ladder import LadderConfig, LadderInput, LadderPeriod
from ..runtime.taps import TapQueue

log = logging.getLogger(__name__)
MAX_CONSUMER_BACKLOG = 8  # batches (≈ 2 s of media) a processor host may leave unanswered


@dataclass
class _Consumer:
    handle: Any  # a ProcessorHost: push(items, dropped_upstream)
    queue: TapQueue = field(default_factory=lambda: TapQueue(MAX_CONSUMER_BACKLOG))
    calls: deque[Any] = field(default_factory=deque)
    # The period its next resync starts: the stream's at first; after that (it restarted or fell
    # behind, mid-segment) one of its own, so a processor's output rendition never writes a name
    # twice (new segment names after an EXT-X-DISCONTINUITY, as the ladder's rungs).
    period: str = ""


class MediaTap:
    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.consumers: dict[str, _Consumer] = {}
        self.config: LadderConfig | None = None  # the stream's latest configuration

    def attach(self, name: str, handle: Any) -> None:
        self.consumers[name] = _Consumer(handle)

    def subscribe_processors(self) -> None:
        """A publish starts: the processor registry starts the hosts attached to this stream."""
        self.consumers = {}
        try:
            hosts: dict[str, Any] = ray.get(_registry().on_publish.remote(self.stream), timeout=10)
        except (ValueError, RayError, GetTimeoutError) as exc:
            log.warning("stream %s: processors not started: %s", self.stream, exc)
            return
        for name, handle in hosts.items():
            self.attach(name, handle)

    def unsubscribe_processors(self) -> None:
        """The publish ended: the registry stops this stream's hosts."""
        self.consumers = {}
        try:
            _registry().on_unpublish.remote(self.stream)
        except ValueError:
            pass

    def detach(self, name: str) -> None:
        self.consumers.pop(name, None)

    def feed(self, items: list[LadderInput], epoch: str) -> None:
        """Send the new items to every consumer that keeps up."""
        for item in items:
            if isinstance(item, LadderConfig):
                self.config = item
        if not items:
            return
        for name, consumer in self.consumers.items():
            while consumer.calls and ray.wait([consumer.calls[0]], timeout=0)[0]:
                try:
                    ray.get(consumer.calls.popleft())
                    consumer.queue.answered(True)
                except RayError:
                    consumer.queue.answered(False)  # it restarted or failed: again from a keyframe
            batch = consumer.queue.offer(items, consumer.period or epoch, self.config)
            if batch is not None and isinstance(batch[0], LadderPeriod):
                consumer.period = secrets.token_hex(4)
            dropped = consumer.queue.take_dropped()
            if dropped:
                metrics.inc("raylive_tap_dropped_frames_total", dropped, stream=self.stream, consumer=name)
            if batch is not None:
                consumer.calls.append(consumer.handle.push.remote(batch, dropped))


def _registry() -> Any:
    return ray.get_actor(REGISTRY_NAME, namespace=ray.get_runtime_context().namespace)
