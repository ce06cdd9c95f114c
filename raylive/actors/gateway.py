"""`RtmpGateway`: an async Ray actor per node that runs the RTMP server.

It authenticates stream keys against Redis and hands each published stream's packets, in
batches, to that stream's `StreamIngest` actor (created on first publish).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import urllib.parse
from collections.abc import Iterable
from typing import Any

import ray
import redis.asyncio as aioredis
from ray.actor import ActorHandle
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import metrics, store
from ..hooks import AdmissionHook, AdmissionRequest
from ..names import NAMESPACE, actor_name, gateway_name
from ..runtime.lifecycle import NOT_CURRENT_PUBLISHER
from ..runtime.rtmp.chunk import RtmpMessage
from ..runtime.rtmp.server import PublishRefused, RtmpConnection, RtmpServer, RtmpServerConfig
from ..settings import Settings
from .stream import StreamIngestActor, StreamReply
from .warm_workers import WarmWorkers

log = logging.getLogger(__name__)
METRICS_INTERVAL_S = 5.0
WARM_CHECK_S = 2.0  # how soon the warm workers a burst of publishers used are replaced
RECLAIM_TIMEOUT_S = 15.0  # how long a publisher waits for its restarted stream actor
# A node started with this label listens for RTMP on that port instead of rtmp.port (several
# Ray nodes on one host, or a host where 1935 is taken): `ray start --labels '{"raylive.io/rtmp-port": "1936"}'`.
RTMP_PORT_LABEL = "raylive.io/rtmp-port"


class _StreamSink:
    """Forwards one connection's media to its stream actor."""

    def __init__(self, conn: RtmpConnection, actor: ActorHandle, token: str, name: str, gateway: RtmpGateway) -> None:
        self.conn = conn
        self.actor = actor
        self.token = token
        self.name = name
        self.gateway = gateway

    async def send(self, messages: list[RtmpMessage]) -> None:
        batch = [(m.type_id, m.timestamp, m.payload) for m in messages]
        lost = False
        try:
            result: StreamReply = await self.actor.push.remote(self.token, batch)
        except Exception as exc:  # noqa: BLE001 - the actor died or failed: never leave the publisher hanging
            result, lost = StreamReply(False, f"stream actor failed: {type(exc).__name__}"), True
        if lost or result.reason == NOT_CURRENT_PUBLISHER:
            # Ray restarted the stream actor (its state went with the old process): claim the
            # stream again with this connection; the actor continues the playlists it had saved.
            result = await self._reclaim(batch) or result
        if not result.ok:
            log.warning("stream %s: closing publisher: %s", self.name, result.reason)
            self.conn.stop(result.reason)

    async def _reclaim(self, batch: list[tuple[int, int, bytes]]) -> StreamReply | None:
        deadline = asyncio.get_running_loop().time() + RECLAIM_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            try:
                claim: StreamReply = await self.actor.claim.remote(self.token, self.conn.address, self.gateway.name)
                if not claim.ok:
                    return None  # someone else holds the stream now
                result: StreamReply = await self.actor.push.remote(self.token, batch)
                return result
            except Exception:  # noqa: BLE001 - still restarting
                await asyncio.sleep(0.25)
        return None

    async def close(self, reason: str) -> None:
        """The connection ended: say so; the stream actor decides (and keeps the reconnect grace)."""
        self.gateway.sinks.pop(self.token, None)
        await self.actor.release.remote(self.token, reason)


def _streams_carried(conns: Iterable[RtmpConnection]) -> int:
    """Connections publishing a stream. One whose publisher has gone no longer counts while its last
    messages are delivered (that waits on its stream's actor): one who restarts the encoder at once
    is not refused for the node's limit."""
    return sum(1 for c in conns if c.stream_name and not c.ending)


async def _claim(gw: RtmpGateway, name: str, token: str, peer: str) -> tuple[ActorHandle, StreamReply]:
    """Claim a stream for a publisher, waiting while Ray restarts its actor (the actor's process
    or node died, also in the middle of this call: a reconnecting publisher must not be turned
    away meanwhile). The actor is looked up again on each try."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RECLAIM_TIMEOUT_S
    while True:
        actor = gw.stream_actor(name)
        try:
            result: StreamReply = await actor.claim.remote(token, peer, gw.name)
            return actor, result
        except RayActorError as exc:  # ActorUnavailableError (restarting) or ActorDiedError (mid-call)
            if loop.time() > deadline:
                raise PublishRefused("NetStream.Publish.Rejected", f"the stream's actor failed: {type(exc).__name__}; try again") from None
            await asyncio.sleep(0.25)


class _Authorizer:
    def __init__(self, gateway: RtmpGateway) -> None:
        self.gw = gateway
        hooks = gateway.settings.hooks
        self.hook = AdmissionHook(hooks.publish_url, hooks.timeout_s, hooks.fail_open, hooks.cache_s) if hooks.publish_url else None

    async def open(self, conn: RtmpConnection, app: str, stream_key: str, query: str = "") -> _StreamSink:
        gw = self.gw
        if app != gw.settings.rtmp.app:
            raise PublishRefused(
                "NetStream.Publish.BadName", f"unknown application '{app}'; publish to /{gw.settings.rtmp.app}/<stream-key>"
            )
        limit = gw.settings.rtmp.max_streams
        if limit and _streams_carried(gw.server.connections.values()) >= limit:
            raise PublishRefused("NetStream.Publish.Rejected", f"this node carries its limit of {limit} streams (rtmp.max_streams)")
        name_raw = await gw.redis.get(store.keyhash_key(store.hash_stream_key(stream_key))) if stream_key else None
        name = store.text(name_raw) if name_raw else None
        digest = await gw.redis.hget(store.stream_key(name), "key_hash") if name else None
        digest = digest.encode() if isinstance(digest, str) else digest
        if name is None or not store.check_stream_key(name, digest, stream_key):
            raise PublishRefused("NetStream.Publish.BadName", "invalid or revoked stream key")
        if self.hook is not None:
            params = dict(urllib.parse.parse_qsl(query))
            admission = await self.hook.ask(AdmissionRequest("publish", name, conn.address, params, gw.node_id))
            if not admission.allowed:
                raise PublishRefused("NetStream.Publish.Rejected", admission.reason)
        token = secrets.token_hex(8)
        actor, claim = await _claim(gw, name, token, conn.address)
        if not claim.ok:
            raise PublishRefused("NetStream.Publish.BadName", claim.reason)
        conn.stream_name = name
        log.info("rtmp conn %s: publishing stream %s", conn.id, name)
        sink = gw.sinks[token] = _StreamSink(conn, actor, token, name, gw)
        return sink


class RtmpGateway:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.redis = aioredis.Redis.from_url(redis_url)
        rt = settings.rtmp
        cfg = RtmpServerConfig(
            handshake_timeout_s=rt.handshake_timeout_s,
            idle_timeout_s=rt.idle_timeout_s,
            flush_interval_s=rt.flush_interval_s,
            read_interval_s=rt.read_interval_s,
            max_message_size=rt.max_message_size,
            max_connections=rt.max_connections,
            publish_timeout_s=rt.publish_timeout_s,
            max_unpublished_per_address=rt.max_unpublished_per_address,
            segment_ms=int(settings.hls.target_duration_s * 1000),
            part_ms=int(settings.hls.part_duration_s * 1000),
        )
        self.server = RtmpServer(_Authorizer(self), cfg)
        self.port = 0
        self.node_id = ""
        self.name = ""  # gateway_name(node_id), what stream actors ask `holds` of
        self.sinks: dict[str, _StreamSink] = {}  # connection token -> its publisher's sink
        self.stopping = False
        self._metrics_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None

    @ray.method(enable_task_events=False)  # `raylive up` calls it every 2 s: GCS kept each call (30 a minute, for good)
    async def start(self) -> int:
        """Listen (idempotent: `raylive up` calls it again after Ray restarted this actor)."""
        if self.port or self.stopping:
            return self.port
        ctx = ray.get_runtime_context()
        self.node_id = ctx.get_node_id()  # pinned to this node for good
        self.name = gateway_name(self.node_id)
        port = int(str(ctx.get_node_labels().get(RTMP_PORT_LABEL, self.settings.rtmp.port)))
        self.port = await self.server.start(self.settings.host, port)
        self._metrics_task = asyncio.get_running_loop().create_task(self._report_metrics())
        if self.settings.rtmp.warm_workers:
            self._warm_task = asyncio.get_running_loop().create_task(self._keep_workers_warm(self.settings.rtmp.warm_workers))
        log.info("RTMP gateway listening on %s:%d", self.settings.host, self.port)
        return self.port

    async def holds(self, token: str) -> bool:
        """Whether this gateway still has the publisher connection `token` (a stream actor asks
        before it refuses a publisher that reconnected through another gateway)."""
        return token in self.sinks

    async def stop(self) -> None:
        self.stopping = True
        await self.server.stop("Server shutting down.")
        await self.redis.hdel(store.PRESENCE, store.presence_field("gateway", self.node_id))

    async def _report_metrics(self) -> None:
        reported: collections.Counter[str] = collections.Counter()
        while True:
            conns = list(self.server.connections.values())
            streams = _streams_carried(conns)
            metrics.set_gauge("raylive_rtmp_connections", len(conns))
            metrics.set_gauge("raylive_live_streams", streams)
            presence = store.presence_value("gateway", self.node_id, port=self.port, connections=len(conns), streams=streams)
            try:
                await self.redis.hset(store.PRESENCE, store.presence_field("gateway", self.node_id), presence)
            except Exception:  # noqa: BLE001 - Redis away for a moment: next round
                log.warning("gateway: could not record its presence in Redis")
            for reason, n in self.server.ended.items():
                metrics.inc("raylive_rtmp_connections_ended_total", n - reported[reason], reason=reason)
                reported[reason] = n
            await asyncio.sleep(METRICS_INTERVAL_S)

    async def _keep_workers_warm(self, count: int) -> None:
        warm: WarmWorkers | None = None
        while not self.stopping:
            try:
                if warm is None:
                    warm = await asyncio.to_thread(WarmWorkers, count)
                await asyncio.to_thread(warm.top_up)
            except Exception as exc:  # noqa: BLE001 - a raylet that does not answer: streams start cold meanwhile
                log.warning("gateway: could not keep Ray workers warm: %s", exc)
            await asyncio.sleep(WARM_CHECK_S)

    def stream_actor(self, name: str) -> Any:
        node_id = ray.get_runtime_context().get_node_id()
        return StreamIngestActor.options(
            name=actor_name(name),
            namespace=NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            # Soft: prefer the gateway's node (no cross-node packet hop) but fail over freely:
            # after a node loss Ray restarts the stream actor on another node.
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True),
        ).remote(
            name,
            self.redis_url,
            self.settings.hls,
            self.settings.rtmp.reconnect_grace_s,
            self.settings.transcode,
            self.settings.rtmp.max_bitrate_kbps,
            self.settings.recording,
            self.settings.recording_url,
        )


RtmpGatewayActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10000)(RtmpGateway)  # type: ignore[call-overload]
