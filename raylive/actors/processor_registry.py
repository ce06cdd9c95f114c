"""`ProcessorRegistry` (the actor named `processors`): what processors are attached to which
streams. It starts a `ProcessorHost` (actors/processor.py) when a matching stream starts publishing
(`attach_all` covers future streams), stops them when it ends or on `detach`, and keeps the specs
in Redis so that a restarted registry knows them again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import re
from typing import TYPE_CHECKING, Any

import ray
import redis

from .. import store
from ..names import actor_name, processor_host_name

if TYPE_CHECKING:  # the processor host's module (numpy, PyAV): see `_start`
    from .processor import ProcessorSpec

log = logging.getLogger(__name__)

# store.PROCESSOR_SPECS: name -> the attached ProcessorSpec (pickled, without its hosts), so that a
# registry Ray restarted knows them again: it starts their hosts on the live streams, and on streams
# that start later. Each value is HMAC-SHA256(cluster secret, pickle) + pickle: unpickling runs code,
# and Redis is not trusted to run code on the cluster (whoever can write there could otherwise).
OUTPUT_NAME = re.compile(r"^[a-z0-9_]{1,32}$")  # a rendition's directory (serve_apps/playback.py PATH_RE)
RESERVED_NAMES = {"source", "audio", "index", "dvr", "thumbnail", "recordings", "clips"}


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
        if spec.output is not None and (not OUTPUT_NAME.match(spec.name) or spec.name in {*RESERVED_NAMES, *self.renditions}):
            raise ValueError(
                f"{spec.name!r} cannot name a rendition: use 1-32 of a-z, 0-9 and _, other than {', '.join(sorted(RESERVED_NAMES))}"
                " and the ladder's renditions"
            )
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
        # Imported here: Ray imports this module wherever a handle to the registry is made (every
        # stream actor, at each publish), and the host's module loads PyAV (4.5 MB of its USS, measured).
        from .processor import ProcessorHostActor

        height = None if spec.rendition == "source" else self.renditions[spec.rendition]["height"]
        host = ProcessorHostActor.options(
            name=processor_host_name(stream, spec.name),
            namespace=ray.get_runtime_context().namespace,
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
        ).remote(stream, spec.name, spec.cls, spec.kwargs, spec.fps, height, spec.max_errors, self.redis_url, spec.output)
        spec.hosts[stream] = host
        return host

    def _ingest(self, stream: str) -> Any:

        try:
            return ray.get_actor(actor_name(stream), namespace=ray.get_runtime_context().namespace)
        except ValueError:
            return None


ProcessorRegistryActor = ray.remote(num_cpus=0, max_restarts=-1)(ProcessorRegistry)
