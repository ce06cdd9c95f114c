"""The Python API for researchers: watch live streams, pull frames as numpy, attach processors.

    import raylive
    rl = raylive.connect()                        # the raylive running on this Ray cluster
    for s in rl.streams(): print(s.name, s.state, s.video)
    for ts, frame in rl.stream("cam1").frames(rendition="360p", fps=5): ...
    handle = rl.stream("cam1").attach(Brightness, fps=2, rendition="360p")
    rl.attach_all(Brightness, fps=1)
    rl.sql("SELECT stream, avg(JSONExtractFloat(payload, 'mean')) FROM processor_events GROUP BY stream")
    handle.detach()

See docs/python-api.md.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import store
from .actors.processor import ProcessorSpec, VideoOutput
from .names import NAMESPACE, REGISTRY_NAME, WRITER_NAME

if TYPE_CHECKING:
    from .models import Model, ModelHandle
from .running import read_runtime


class Processor:
    """Subclass it: `process` gets each sampled frame (HxWx3 uint8 RGB) and its media time in
    seconds, and may return a dict (stored in `processor_events` and pushed to WebSockets), or,
    when attached with `output=True`, a frame (HxWx3 uint8 RGB or an `av.VideoFrame`) that becomes
    the stream's rendition named after the processor (`/live/NAME/<processor>.m3u8`).
    It runs in its own Ray actor; `setup()` runs there once before the first frame."""

    def setup(self) -> None:
        """Load models here, not in __init__ (which also runs where you call attach)."""

    def process(self, frame: np.ndarray, ts: float) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class StreamState:
    name: str
    state: str  # idle | live | reconnecting | ended
    video: dict[str, Any]  # codec, resolution, fps, bitrate_kbps (when live)
    viewers: int
    info: dict[str, Any]  # everything the REST API's stream object has


class ProcessorHandle:
    def __init__(self, registry: Any, name: str) -> None:
        self._registry, self.name = registry, name

    def stats(self) -> list[dict[str, Any]]:
        """Per stream: frames processed, dropped, errors, and why it was detached if it was."""
        import ray

        return list(ray.get(self._registry.stats.remote(self.name)))

    def detach(self) -> None:
        import ray

        ray.get(self._registry.detach.remote(self.name))


class _FrameQueue(Processor):
    """Hands frames to `StreamRef.frames` through a bounded Ray queue (full: the frame is dropped)."""

    def __init__(self, frames: Any) -> None:
        self.frames = frames

    def process(self, frame: np.ndarray, ts: float) -> None:
        from ray.util.queue import Full

        try:
            self.frames.put_nowait((ts, frame))
        except Full:
            pass


class StreamRef:
    def __init__(self, client: Client, name: str) -> None:
        self._client, self.name = client, name

    def info(self) -> StreamState:
        info = store.get_stream(self._client.redis, self.name)
        if info is None:
            raise KeyError(f"no stream named {self.name!r}")
        return _state(info)

    def attach(
        self,
        processor: type[Processor],
        fps: float | None = None,
        rendition: str = "source",
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_errors: int = 10,
        name: str | None = None,
        output: bool = False,
        video_kbps: int = 0,
        max_delay_s: float = 0.5,
        **kwargs: Any,
    ) -> ProcessorHandle:
        """Run `processor` on this stream (now if it is live, else from its next publish) on `fps`
        frames a second (default 1; with `output`, every frame). With `output`, the frames it returns
        become the rendition `name` (a-z, 0-9, _): one output frame per source frame, at its
        timestamp; a frame it has not answered within `max_delay_s` repeats its latest output."""
        video = VideoOutput(video_kbps, max_delay_s) if output else None
        return self._client._attach({self.name}, processor, fps, rendition, num_cpus, num_gpus, max_errors, name, kwargs, video)

    def frames(
        self, rendition: str = "source", fps: float = 5.0, timeout_s: float = 30.0, buffer: int = 8
    ) -> Iterator[tuple[float, np.ndarray]]:
        """(media time s, HxWx3 uint8 RGB) at about `fps`, until the stream ends (no frame for
        `timeout_s`) or the loop stops. A consumer slower than `fps` gets the newest frames."""
        from ray.util.queue import Empty, Queue

        frames = Queue(maxsize=buffer)
        handle = self.attach(_FrameQueue, fps=fps, rendition=rendition, num_cpus=0.1, name=f"frames-{uuid.uuid4().hex[:8]}", frames=frames)
        try:
            while True:
                try:
                    yield frames.get(timeout=timeout_s)
                except Empty:
                    return
        finally:
            handle.detach()
            frames.shutdown()


class Client:
    def __init__(self, registry: Any, writer: Any, redis_url: str) -> None:
        import redis

        self._registry, self._writer = registry, writer
        self.redis = redis.Redis.from_url(redis_url)

    def streams(self, all: bool = False) -> list[StreamState]:
        """Streams and their live state (the same data as GET /api/v1/streams); live ones unless `all`."""
        return [_state(s) for s in store.list_streams(self.redis) if all or s.get("state") == "live"]

    def stream(self, name: str) -> StreamRef:
        return StreamRef(self, store.validate_name(name))

    def attach_all(
        self,
        processor: type[Processor],
        fps: float | None = None,
        rendition: str = "source",
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_errors: int = 10,
        name: str | None = None,
        output: bool = False,
        video_kbps: int = 0,
        max_delay_s: float = 0.5,
        **kwargs: Any,
    ) -> ProcessorHandle:
        """Run `processor` on every live stream and on every stream that starts later (see `StreamRef.attach`)."""
        video = VideoOutput(video_kbps, max_delay_s) if output else None
        return self._attach(None, processor, fps, rendition, num_cpus, num_gpus, max_errors, name, kwargs, video)

    def deploy_model(self, model: type[Model], name: str, **options: Any) -> ModelHandle:
        """Deploy `model` once for the cluster (a Ray Serve deployment batching every processor's
        calls; on a GPU when the cluster has one): processors call it with `raylive.model(name)(x)`.
        `options`: `max_batch_size`, `batch_wait_s`, `num_cpus`, `num_gpus` and the model's own
        keyword arguments (`raylive.models.deploy`)."""
        from . import models

        return models.deploy(model, name, **options)

    def sql(self, query: str, **parameters: Any) -> list[dict[str, Any]]:
        """Read-only SQL over the analytics tables (ClickHouse), rows as dicts."""
        import ray

        result = ray.get(self._writer.sql.remote(query, parameters or None))
        return [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]

    def _attach(
        self,
        streams: set[str] | None,
        processor: type[Processor],
        fps: float | None,
        rendition: str,
        num_cpus: float,
        num_gpus: float,
        max_errors: int,
        name: str | None,
        kwargs: dict[str, Any],
        output: VideoOutput | None = None,
    ) -> ProcessorHandle:
        import ray

        fps = fps if fps is not None else 0.0 if output else 1.0
        if fps < 0 or (fps == 0 and not output) or max_errors < 1:
            raise ValueError("fps must be > 0 and max_errors >= 1")
        if output is not None and output.max_delay_s <= 0:
            raise ValueError("max_delay_s must be > 0")
        default = f"{processor.__name__.lower()[:27]}_{uuid.uuid4().hex[:4]}" if output else f"{processor.__name__}-{uuid.uuid4().hex[:6]}"
        name = name or default
        spec = ProcessorSpec(name, processor, kwargs, fps, rendition, num_cpus, num_gpus, max_errors, streams, output=output)
        ray.get(self._registry.attach.remote(spec))
        return ProcessorHandle(self._registry, name)


def _state(info: dict[str, Any]) -> StreamState:
    video: dict[str, Any] = {k: info[k] for k in ("video_codec", "resolution", "fps", "bitrate_kbps") if k in info}
    return StreamState(info["name"], info["state"], video, info.get("viewers", 0), info)


def connect(address: str | None = None, data_dir: str | os.PathLike[str] | None = None, timeout_s: float = 30.0) -> Client:
    """Connect to a running raylive: its Ray cluster `address` (default: the one recorded by
    `raylive up` in `data_dir`, $RAYLIVE_DATA_DIR or ~/.raylive; else "auto")."""
    import ray

    if address is None:
        runtime = read_runtime(Path(data_dir or os.environ.get("RAYLIVE_DATA_DIR") or "~/.raylive").expanduser())
        address = (runtime or {}).get("ray_address") or "auto"
    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # like `raylive up` (RAY_AUTH_MODE=disabled opts out)
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            registry = ray.get_actor(REGISTRY_NAME, namespace=NAMESPACE)
            writer = ray.get_actor(WRITER_NAME, namespace=NAMESPACE)
            break
        except ValueError:
            if time.monotonic() > deadline:
                raise ConnectionError(f"no raylive on the Ray cluster at {address}") from None
            time.sleep(0.5)
    return Client(registry, writer, str(ray.get(registry.get_redis_url.remote())))


__all__ = ["Client", "Processor", "ProcessorHandle", "StreamRef", "StreamState", "connect"]
