"""Control API on Ray Serve (FastAPI): streams and keys, live state, WebSocket push.

Everything under /api/v1 needs `Authorization: Bearer <token>`: the admin token, or an API token
with the endpoint's scope (`auth.py`); WebSockets take a one-time ticket. Playback (/live/...)
stays public.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Annotated, Any

import ray
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import metrics, store
from ..names import NAMESPACE, WRITER_NAME, actor_name
from ..runtime.media import STREAM_NAME
from .auth import AUTH, Admin, Analyst, Reader, websocket_caller
from .auth import router as auth_router

NAME_PATTERN = f"^{STREAM_NAME}$"
PUSH_INTERVAL_S = 1.0

# Per-replica state, set by ControlApp.__init__. Module-level because Serve serves a copy of `app`.
STATE = SimpleNamespace(redis=None, sync_redis=None, media_redis=None, rtmp_port=1935, renditions=["source"])

app = FastAPI(
    title="raylive control API",
    version="1",
    description="Streams, keys and live state of a raylive deployment. Every /api/v1 endpoint needs a Bearer token "
    "(the admin token, or an API token with the scope the endpoint names: admin, read or analytics).",
)
app.include_router(auth_router)


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="1-64 letters, digits, '-' or '_'", examples=["cam1"])
    ladder: list[str] | None = Field(
        default=None, min_length=1, description="renditions for this stream (default: the configured ladder)", examples=[["source", "360p"]]
    )


class LadderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ladder: list[str] | None = Field(min_length=1, description="renditions from the next publish on; null: the configured default")


class StreamCreated(BaseModel):
    name: str
    key: str = Field(description="The secret stream key. Shown once; only its hash is stored.")
    publish_url: str
    playback_url: str


class StreamInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    state: str = Field(description="idle, live or ended")
    created_at: float
    revoked: bool
    viewers: int = Field(description="sessions that fetched a playlist or segment in the last 30 s")
    peak_viewers: int
    unique_viewers: int
    started_at: float | None = None
    ended_at: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    resolution: str | None = None
    fps: float | None = None
    bitrate_kbps: float | None = None
    keyframe_interval_ms: int | None = None
    renditions: dict[str, dict[str, int]] = Field(default_factory=dict, description="bits/s out per rendition")
    viewers_by_rendition: dict[str, int] = Field(default_factory=dict)
    watch_time_s: float = 0.0
    node: str | None = Field(default=None, description="host name of the node whose stream actor runs this stream")
    node_id: str | None = Field(default=None, description="that node's Ray node id")
    actor: str | None = None
    ladder: list[str] | None = Field(default=None, description="this stream's own ladder; null: the configured default")
    encoder: str | None = Field(default=None, description="encoder of the ladder rungs (libx264, h264_nvenc)")
    transcode_lag_s: float | None = None
    transcode_realtime_factor: dict[str, float] = Field(default_factory=dict, description="media s encoded per wall s, per rung")
    transcoder_restarts: int | None = Field(default=None, description="transcoders lost (and replaced) during this publish")


class NodeInfo(BaseModel):
    node_id: str
    address: str
    alive: bool
    cpus: float
    gpus: float
    rtmp_port: int | None = Field(description="port its RTMP gateway listens on; null: no gateway is listening")
    rtmp_connections: int = 0
    playback_replicas: int = 0
    streams: list[str] = Field(default_factory=list, description="live streams whose actor runs on this node")


class ClusterInfo(BaseModel):
    nodes: list[NodeInfo]
    playback_replicas: int


class ErrorBody(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "request"
    message = f"invalid {where}: {errors[0]['msg']}" if errors else "invalid request"
    if errors and errors[0]["loc"][-1] == "name":
        message = "invalid name: stream names are 1-64 characters: letters, digits, '-' and '_', starting with a letter or digit"
    return JSONResponse({"error": message, "detail": jsonable_encoder(errors)}, status_code=422)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _call(fn: Any, *args: Any) -> Any:
    """Run a (synchronous) `raylive.store` function on a worker thread with the shared pool."""
    return await asyncio.to_thread(fn, STATE.sync_redis, *args)


def _stream_details(r: redis.Redis, name: str) -> dict[str, Any] | None:
    info = store.get_stream(r, name)
    if info is not None:
        info.update(store.viewer_details(r, name, list(info.get("renditions", {}))))
    return info


async def _stream(name: str) -> dict[str, Any]:
    info = await _call(_stream_details, name)
    if info is None:
        raise HTTPException(404, f"no stream named {name!r}")
    return info  # type: ignore[no-any-return]


def _urls(request: Request, name: str, key: str) -> tuple[str, str]:
    host = request.url.hostname or "localhost"
    rtmp_port = STATE.rtmp_port
    return f"rtmp://{host}:{rtmp_port}/live/{key}", f"{request.base_url}live/{name}/index.m3u8"


async def _kick(name: str, reason: str) -> bool:
    try:
        actor = ray.get_actor(actor_name(name), namespace=NAMESPACE)
    except ValueError:
        return False  # never published on this cluster: nothing to disconnect
    return bool(await actor.kick.remote(reason))


@app.get("/metrics", include_in_schema=False)
async def prometheus_metrics(_: Reader) -> PlainTextResponse:
    """raylive's metrics from every node's Ray exporter, in Prometheus text format."""
    nodes = [n for n in ray.nodes() if n["Alive"] and n.get("MetricsExportPort")]
    text = await metrics.gather_prometheus([f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics" for n in nodes])
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@app.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@app.get("/readyz", include_in_schema=False)
async def readyz() -> JSONResponse:
    """200 only when publishing, playback and this API all work (for container health checks and
    scripts; no token needed, nothing secret in it): Redis answers, a gateway is listening and a
    playback replica is serving, by their fresh presence records. 503 names what is missing."""
    checks = {"api": True, "redis": False, "rtmp": False, "playback": False}
    try:
        presence = await asyncio.to_thread(store.read_presence, STATE.sync_redis)
        checks["redis"] = True
        checks["rtmp"] = any(p["kind"] == "gateway" and p.get("port") for p in presence)
        checks["playback"] = any(p["kind"] == "playback" for p in presence)
    except redis.RedisError:
        pass
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _cluster(r: redis.Redis) -> dict[str, Any]:
    presence = store.read_presence(r)
    gateways = {p["node_id"]: p for p in presence if p["kind"] == "gateway"}
    replicas = [p["node_id"] for p in presence if p["kind"] == "playback"]
    live = [s for s in store.list_streams(r) if s.get("state") in ("live", "reconnecting")]
    nodes = []
    for n in ray.nodes():
        node_id, gw = n["NodeID"], gateways.get(n["NodeID"], {})
        nodes.append(
            {
                "node_id": node_id,
                "address": n["NodeManagerAddress"],
                "alive": n["Alive"],
                "cpus": n["Resources"].get("CPU", 0.0),
                "gpus": n["Resources"].get("GPU", 0.0),
                "rtmp_port": gw.get("port"),
                "rtmp_connections": gw.get("connections", 0),
                "playback_replicas": replicas.count(node_id),
                "streams": sorted(s["name"] for s in live if s.get("node_id") == node_id),
            }
        )
    return {"nodes": nodes, "playback_replicas": len(replicas)}


@app.get("/api/v1/cluster", response_model=ClusterInfo, responses=ERRORS)
async def cluster(_: Reader) -> dict[str, Any]:
    """The Ray nodes and what runs on each: RTMP gateway, playback replicas, stream actors."""
    return await _call(_cluster)  # type: ignore[no-any-return]


def _check_ladder(ladder: list[str] | None) -> None:
    unknown = [r for r in ladder or [] if r not in STATE.renditions]
    if unknown:
        raise HTTPException(422, f"unknown rendition(s) {', '.join(map(repr, unknown))}; known: {', '.join(STATE.renditions)}")


@app.post("/api/v1/streams", status_code=201, response_model=StreamCreated, responses={**ERRORS, 409: {"model": ErrorBody}})
async def create_stream(body: StreamCreate, request: Request, _: Admin) -> StreamCreated:
    _check_ladder(body.ladder)
    try:
        key = await _call(store.create_stream, body.name, body.ladder)
    except store.StreamExists:
        raise HTTPException(409, f"stream {body.name!r} already exists") from None
    publish, playback = _urls(request, body.name, key)
    return StreamCreated(name=body.name, key=key, publish_url=publish, playback_url=playback)


@app.get("/api/v1/streams", response_model=list[StreamInfo], responses=ERRORS)
async def list_streams(request: Request, _: Reader) -> list[dict[str, Any]]:
    return await _call(store.list_streams)  # type: ignore[no-any-return]


@app.get("/api/v1/streams/{name}", response_model=StreamInfo, responses=ERRORS)
async def get_stream(name: str, request: Request, _: Reader) -> dict[str, Any]:
    return await _stream(name)


@app.post("/api/v1/streams/{name}/key/rotate", response_model=StreamCreated, responses=ERRORS)
async def rotate_key(name: str, request: Request, _: Admin) -> StreamCreated:
    try:
        key = await _call(store.rotate_key, name)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    publish, playback = _urls(request, name, key)
    return StreamCreated(name=name, key=key, publish_url=publish, playback_url=playback)


@app.put("/api/v1/streams/{name}/ladder", response_model=StreamInfo, responses=ERRORS)
async def set_ladder(name: str, body: LadderUpdate, request: Request, _: Admin) -> dict[str, Any]:
    _check_ladder(body.ladder)
    try:
        await _call(store.set_ladder, name, body.ladder)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    return await _stream(name)


@app.post("/api/v1/streams/{name}/revoke", response_model=StreamInfo, responses=ERRORS)
async def revoke(name: str, request: Request, _: Admin) -> dict[str, Any]:
    try:
        await _call(store.revoke_stream, name)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    await _kick(name, "stream key revoked")
    return await _stream(name)


@app.post("/api/v1/streams/{name}/stop", response_model=StreamInfo, responses=ERRORS)
async def stop(name: str, request: Request, _: Admin) -> dict[str, Any]:
    info = await _stream(name)
    await _kick(name, "stopped through the API")
    return info


@app.delete("/api/v1/streams/{name}", status_code=204, responses=ERRORS)
async def delete(name: str, request: Request, _: Admin) -> None:
    try:
        await _call(store.delete_stream, name)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    await _kick(name, "stream deleted")  # a live stream's actor removes what it writes as it ends
    await asyncio.to_thread(store.delete_stream_files, STATE.media_redis, name)


def _snapshot(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "state", "viewers", "peak_viewers", "bitrate_kbps", "fps", "resolution", "started_at")
    return {"type": "status", "time": time.time(), **{k: info.get(k) for k in keys}}


async def _push(ws: WebSocket, name: str | None) -> None:
    """Status at least once a second, plus events as they happen (publish, unpublish, processor results)."""
    if await websocket_caller(ws) is None:
        await ws.close(code=4401, reason="missing, spent or invalid ticket: POST /api/v1/ws-tickets for one")
        return
    await ws.accept()
    r: aioredis.Redis = STATE.redis
    pubsub = r.pubsub()
    await pubsub.subscribe(store.EVENTS_CHANNEL)
    try:
        next_status = 0.0
        while True:
            now = time.monotonic()
            if now >= next_status:
                names = [name] if name else [store.text(n) for n in sorted(await r.smembers(store.STREAMS))]
                for n in names:
                    info = await _call(_stream_details, n)
                    await ws.send_json(_snapshot(info) if info else {"type": "status", "name": n, "state": "deleted"})
                next_status = now + PUSH_INTERVAL_S
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=max(0.0, next_status - time.monotonic()))
            if msg is not None:
                event = json.loads(msg["data"])
                if name is None or event.get("name") == name:
                    await ws.send_json({"type": "event", **event})
                    if event.get("event") in ("publish", "unpublish"):
                        next_status = 0.0  # follow a state change with fresh status at once
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass  # the client went away: nothing to keep
    finally:
        await pubsub.unsubscribe()
        await pubsub.reset()


class ViewerPoint(BaseModel):
    t: int = Field(description="start of the step, unix seconds")
    viewers: int


class IngestPoint(BaseModel):
    t: int
    bitrate_kbps: float
    fps: float
    late_frames: int
    transcode_lag_s: float


class StreamAnalytics(BaseModel):
    stream: str
    from_: float = Field(alias="from")
    to: float
    step: int
    peak_viewers: int = Field(description="most concurrent sessions in any 5 s heartbeat interval")
    unique_viewers: int
    watch_time_s: float = Field(description="sum over sessions of last minus first request")
    viewers: list[ViewerPoint]
    renditions: dict[str, float] = Field(description="share of viewer heartbeats per video rendition")
    ingest: list[IngestPoint]


class TopStream(BaseModel):
    stream: str
    watch_time_s: float
    sessions: int


PERIOD_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 10_000


async def _analytics(method: str, *args: Any) -> Any:
    try:
        writer = ray.get_actor(WRITER_NAME, namespace=NAMESPACE)
    except ValueError:
        raise HTTPException(503, "analytics are not running") from None
    return await getattr(writer, method).remote(*args)


@app.get("/api/v1/streams/{name}/analytics", response_model=StreamAnalytics, responses=ERRORS)
async def stream_analytics(
    name: str,
    _: Reader,
    from_: Annotated[float | None, Query(alias="from", description="unix seconds; default: an hour before `to`")] = None,
    to: Annotated[float | None, Query(description="unix seconds; default: now")] = None,
    step: Annotated[int, Query(ge=1, le=86400, description="seconds per timeline point")] = 60,
) -> dict[str, Any]:
    await _stream(name)  # 404 for an unknown stream
    end = time.time() if to is None else to
    start = end - 3600 if from_ is None else from_
    if not 0 <= start < end or (end - start) / step > MAX_POINTS:
        raise HTTPException(422, f"need 0 <= from < to and at most {MAX_POINTS} points of `step` seconds")
    return await _analytics("stream_report", name, start, end, step)  # type: ignore[no-any-return]


@app.get("/api/v1/analytics/top", response_model=list[TopStream], responses=ERRORS)
async def top_streams(
    _: Reader,
    period: Annotated[str, Query(pattern=r"^[1-9][0-9]{0,5}[smhd]$", description="e.g. 15m, 24h, 7d")] = "24h",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[dict[str, Any]]:
    end = time.time()
    return await _analytics("top_streams", end - int(period[:-1]) * PERIOD_S[period[-1]], end, limit)  # type: ignore[no-any-return]


class SqlQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str = Field(max_length=100_000, examples=["SELECT stream, count() FROM viewer_events GROUP BY stream"])
    parameters: dict[str, Any] = Field(default_factory=dict, description="ClickHouse {name:Type} parameters")


class SqlResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@app.post("/api/v1/analytics/sql", response_model=SqlResult, responses={**ERRORS, 422: {"model": ErrorBody}})
async def analytics_sql(body: SqlQuery, _: Analyst) -> dict[str, Any]:
    """Read-only SQL over the analytics tables (viewer_events, ingest_health, stream_sessions)."""
    try:
        return await _analytics("sql", body.sql, body.parameters)  # type: ignore[no-any-return]
    except ray.exceptions.RayTaskError as exc:  # refused (not read-only) or failed in ClickHouse
        raise HTTPException(422, f"query refused: {str(exc.cause).strip().splitlines()[0][:500]}") from None


@app.get("/api/v1/analytics/status", responses=ERRORS)
async def analytics_status(_: Reader) -> dict[str, Any]:
    """The analytics pipeline: events buffered in Redis and not yet in ClickHouse, inserts, errors."""
    return await _analytics("stats")  # type: ignore[no-any-return]


@app.websocket("/api/v1/ws/streams/{name}")
async def ws_stream(ws: WebSocket, name: str) -> None:
    await _push(ws, name)


@app.websocket("/api/v1/ws/streams")
async def ws_streams(ws: WebSocket) -> None:
    await _push(ws, None)


@serve.ingress(app)
class ControlApp:
    def __init__(self, redis_url: str, token_hash: str, rtmp_port: int, renditions: list[str]) -> None:
        STATE.redis = aioredis.Redis.from_url(redis_url)  # pub/sub for WebSocket push
        STATE.sync_redis = redis.Redis.from_url(redis_url)  # raylive.store calls, on threads
        STATE.media_redis = redis.Redis.from_url(store.media_url(STATE.sync_redis, redis_url))
        AUTH.admin_digest, AUTH.redis, AUTH.sync_redis = token_hash, STATE.redis, STATE.sync_redis
        STATE.rtmp_port = rtmp_port
        STATE.renditions = ["source", *renditions]


ControlDeployment = serve.deployment(name="control")(ControlApp)
