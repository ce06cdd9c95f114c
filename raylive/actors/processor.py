"""Researchers' processors as Ray actors.

`ProcessorHost` runs one user `Processor` on one stream: the stream's `StreamIngest` sends it the
compressed video it taps anyway (never raw frames), the host decodes, samples `fps` frames per
second at the rendition's height and feeds them to `process()` on its own thread through a
two-frame queue; a slow processor drops frames (counted), it never slows ingest. What `process`
returns goes to ClickHouse (`processor_events`) and to the `rl:events` channel (WebSocket).

`ProcessorRegistry` (named `processors`) remembers what is attached to which streams, starts
hosts when a matching stream starts publishing (`attach_all` covers future streams) and stops
them when it ends or on `detach`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import redis

from .. import analytics, store
from ..names import REGISTRY_NAME, actor_name, processor_host_name
from ..runtime.frames import FrameSampler
from ..runtime.ladder import LadderInput

log = logging.getLogger(__name__)

# store.PROCESSOR_SPECS: name -> the attached ProcessorSpec (pickled, without its hosts), so that a
# registry Ray restarted knows them again: it starts their hosts on the live streams, and on streams
# that start later. Each value is HMAC-SHA256(cluster secret, pickle) + pickle: unpickling runs code,
# and Redis is not trusted to run code on the cluster (whoever can write there could otherwise).
QUEUE_FRAMES = 2


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


class ProcessorHost:
    def __init__(
        self, stream: str, name: str, cls: type, kwargs: dict[str, Any], fps: float, height: int | None, max_errors: int, redis_url: str
    ) -> None:
        self.stream, self.name, self.max_errors = stream, name, max_errors
        self.redis = redis.Redis.from_url(redis_url)
        self.processor = cls(**kwargs)
        self.sampler = FrameSampler(fps, height)
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
        frames = self.sampler.push(items)
        with self.cond:
            for f in frames:
                if len(self.queue) >= QUEUE_FRAMES:
                    self.queue.popleft()  # the processor is behind: keep the newest frames
                    self.dropped += 1
                self.queue.append(f)
            self.cond.notify()
        return len(frames)

    def stats(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "processor": self.name,
            "processed": self.processed,
            "dropped": self.dropped + self.dropped_upstream,
            "errors": self.errors,
            "decoded": self.sampler.decoded,
            "undecodable": self.sampler.undecodable,
            "detached": self.detached,
        }

    def _run(self) -> None:
        while not self.detached:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                ts, frame = self.queue.popleft()
            try:
                result = self.processor.process(frame, ts)
            except Exception as exc:  # noqa: BLE001 - a processor bug must not take the stream down
                self.errors += 1
                self.consecutive_errors += 1
                log.warning("processor %s on stream %s failed on the frame at %.3f s: %r", self.name, self.stream, ts, exc)
                if self.consecutive_errors >= self.max_errors:
                    self._detach(f"{self.consecutive_errors} consecutive errors, last: {exc!r}")
                continue
            self.consecutive_errors = 0
            self.processed += 1
            if isinstance(result, dict):
                self._publish(ts, result)

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
    hosts: dict[str, Any] = field(default_factory=dict)  # stream -> ProcessorHost handle
    detached: dict[str, str] = field(default_factory=dict)  # stream -> why


def seal(secret: bytes, blob: bytes) -> bytes:
    return hmac.new(secret, blob, hashlib.sha256).digest() + blob


def open_sealed(secret: bytes, sealed: bytes) -> bytes | None:
    """The blob if its signature is the secret's (constant-time compare), else None."""
    mac, blob = sealed[:32], sealed[32:]
    return blob if hmac.compare_digest(mac, hmac.new(secret, blob, hashlib.sha256).digest()) else None


class ProcessorRegistry:
    def __init__(self, redis_url: str, renditions: dict[str, dict[str, int]], secret: bytes) -> None:
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.renditions = renditions
        self.secret = secret
        self.specs: dict[str, ProcessorSpec] = {}
        for field_name, raw in self.redis.hgetall(store.PROCESSOR_SPECS).items():  # a restart: the hosts died with the old registry
            blob = open_sealed(secret, raw) if isinstance(raw, bytes) else None
            if blob is None:
                log.warning("processor spec %r in Redis is not signed with the cluster secret: ignored", store.text(field_name))
                continue
            spec = ray.cloudpickle.loads(blob)
            self.specs[spec.name] = spec
            started = self._start_on_live_streams(spec)
            log.warning("processor registry restarted: %s attached again on %s", spec.name, started or "no live stream")

    def get_redis_url(self) -> str:
        return self.redis_url

    def attach(self, spec: ProcessorSpec) -> list[str]:
        """Register a processor and start it on the matching live streams; returns those streams."""
        if spec.name in self.specs:
            raise ValueError(f"a processor named {spec.name!r} is already attached")
        if spec.rendition != "source" and spec.rendition not in self.renditions:
            raise ValueError(f"unknown rendition {spec.rendition!r}")
        self.specs[spec.name] = spec
        self._save(spec)
        return self._start_on_live_streams(spec)

    def _save(self, spec: ProcessorSpec) -> None:
        self.redis.hset(store.PROCESSOR_SPECS, spec.name, seal(self.secret, ray.cloudpickle.dumps(dataclasses.replace(spec, hosts={}))))

    def _start_on_live_streams(self, spec: ProcessorSpec) -> list[str]:
        live = [s["name"] for s in store.list_streams(self.redis) if s.get("state") == "live"]
        started = []
        for stream in live:
            if (spec.streams is None or stream in spec.streams) and stream not in spec.detached:
                try:
                    host = self._start(spec, stream)
                except ValueError as exc:  # the name of the host that died with us is not free yet
                    log.warning("processor %s not started on %s: %s", spec.name, stream, exc)
                    continue
                ingest = self._ingest(stream)
                if ingest is not None:
                    ingest.subscribe.remote(spec.name, host)
                    started.append(stream)
        return started

    def on_publish(self, stream: str) -> dict[str, Any]:
        """A stream started: hosts for every processor that covers it (the ingest subscribes them)."""
        return {
            spec.name: spec.hosts.get(stream) or self._start(spec, stream)
            for spec in self.specs.values()
            if (spec.streams is None or stream in spec.streams) and stream not in spec.detached
        }

    def on_unpublish(self, stream: str) -> None:
        for spec in self.specs.values():
            host = spec.hosts.pop(stream, None)
            if host is not None:
                ray.kill(host)

    def detach(self, name: str, stream: str | None = None, reason: str = "detached") -> bool:
        """Stop a processor on one stream, or everywhere (and forget it) when `stream` is None."""
        spec = self.specs.get(name)
        if spec is None:
            return False
        streams = [stream] if stream is not None else list(spec.hosts)
        for s in streams:
            host = spec.hosts.pop(s, None)
            ingest = self._ingest(s)
            if ingest is not None:
                ingest.unsubscribe.remote(name)
            if host is not None:
                ray.kill(host)
            spec.detached[s] = reason
        if stream is None:
            del self.specs[name]
            self.redis.hdel(store.PROCESSOR_SPECS, name)
        else:
            self._save(spec)
        return True

    def stats(self, name: str) -> list[dict[str, Any]]:
        spec = self.specs.get(name)
        if spec is None:
            return []
        out = ray.get([h.stats.remote() for h in spec.hosts.values()])
        return [*out, *({"stream": s, "processor": name, "detached": r} for s, r in spec.detached.items())]

    def _start(self, spec: ProcessorSpec, stream: str) -> Any:
        height = None if spec.rendition == "source" else self.renditions[spec.rendition]["height"]
        host = ProcessorHostActor.options(
            name=processor_host_name(stream, spec.name),
            namespace=ray.get_runtime_context().namespace,
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
        ).remote(stream, spec.name, spec.cls, spec.kwargs, spec.fps, height, spec.max_errors, self.redis_url)
        spec.hosts[stream] = host
        return host

    def _ingest(self, stream: str) -> Any:

        try:
            return ray.get_actor(actor_name(stream), namespace=ray.get_runtime_context().namespace)
        except ValueError:
            return None


ProcessorRegistryActor = ray.remote(num_cpus=0, max_restarts=-1)(ProcessorRegistry)
