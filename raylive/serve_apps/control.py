"""Control API on Ray Serve (FastAPI): streams and keys, live state, WebSocket push.

Everything under /api/v1 needs `Authorization: Bearer <token>`: the admin token, or an API token
with the endpoint's scope (`auth.py`); WebSockets take a one-time ticket. Playback (/live/...)
stays public.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import ray
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import metrics, store
from ..actors.recorder import RecordingStore
from ..names import NAMESPACE, actor_name
from ..playback_auth import mint
from .analytics_api import router as analytics_router
from .auth import Admin, Reader
from .auth import router as auth_router
from .console import router as console_router
from .context import STATE, call, stream
from .models import (
    ERRORS,
    ClusterInfo,
    ErrorBody,
    LadderUpdate,
    PlaybackKey,
    PlaybackKeyRotate,
    PlaybackToken,
    PlaybackTokenRequest,
    PlaybackUpdate,
    StreamCreate,
    StreamCreated,
    StreamInfo,
    WebhookEndpoint,
)
from .push import router as push_router
from .recordings_api import router as recordings_router

app = FastAPI(
    title="raylive control API",
    version="1",
    description="Streams, keys and live state of a raylive deployment. Every /api/v1 endpoint needs a Bearer token "
    "(the admin token, or an API token with the scope the endpoint names: admin, read or analytics).",
)
for router in (auth_router, analytics_router, push_router, console_router, recordings_router):
    app.include_router(router)


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
    return {"nodes": nodes, "playback_replicas": len(replicas), "renditions": STATE.renditions, "dashboard_url": STATE.dashboard_url}


@app.get("/api/v1/cluster", response_model=ClusterInfo, responses=ERRORS)
async def cluster(request: Request, _: Reader) -> dict[str, Any]:
    """The Ray nodes and what runs on each: RTMP gateway, playback replicas, stream actors."""
    return {**await call(_cluster), "rtmp_url": _urls(request, "", "")[0].rstrip("/")}


@app.get("/api/v1/webhooks", response_model=list[WebhookEndpoint], responses=ERRORS)
async def webhooks(_: Reader) -> list[dict[str, Any]]:
    """The event webhook endpoints (`webhooks.endpoints`): what waits for each and its latest deliveries."""
    return await call(store.webhook_status)  # type: ignore[no-any-return]


def _check_ladder(ladder: list[str] | None) -> None:
    unknown = [r for r in ladder or [] if r not in STATE.renditions]
    if unknown:
        raise HTTPException(422, f"unknown rendition(s) {', '.join(map(repr, unknown))}; known: {', '.join(STATE.renditions)}")


@app.post("/api/v1/streams", status_code=201, response_model=StreamCreated, responses={**ERRORS, 409: {"model": ErrorBody}})
async def create_stream(body: StreamCreate, request: Request, _: Admin) -> StreamCreated:
    _check_ladder(body.ladder)
    try:
        key = await call(store.create_stream, body.name, body.ladder, body.playback)
    except store.StreamExists:
        raise HTTPException(409, f"stream {body.name!r} already exists") from None
    publish, playback = _urls(request, body.name, key)
    return StreamCreated(name=body.name, key=key, publish_url=publish, playback_url=playback)


@app.get("/api/v1/streams", response_model=list[StreamInfo], responses=ERRORS)
async def list_streams(request: Request, _: Reader) -> list[dict[str, Any]]:
    return await call(store.list_streams)  # type: ignore[no-any-return]


@app.get("/api/v1/streams/{name}", response_model=StreamInfo, responses=ERRORS)
async def get_stream(name: str, request: Request, _: Reader) -> dict[str, Any]:
    return await stream(name)


@app.post("/api/v1/streams/{name}/key/rotate", response_model=StreamCreated, responses=ERRORS)
async def rotate_key(name: str, request: Request, _: Admin) -> StreamCreated:
    try:
        key = await call(store.rotate_key, name)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    publish, playback = _urls(request, name, key)
    return StreamCreated(name=name, key=key, publish_url=publish, playback_url=playback)


@app.put("/api/v1/streams/{name}/ladder", response_model=StreamInfo, responses=ERRORS)
async def set_ladder(name: str, body: LadderUpdate, request: Request, _: Admin) -> dict[str, Any]:
    _check_ladder(body.ladder)
    try:
        await call(store.set_ladder, name, body.ladder)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    return await stream(name)


@app.put("/api/v1/streams/{name}/playback", response_model=StreamInfo, responses=ERRORS)
async def set_playback(name: str, body: PlaybackUpdate, request: Request, _: Admin) -> dict[str, Any]:
    """Public playback, or signed: every playback URL needs a token (within a few seconds on every replica)."""
    try:
        await call(store.set_playback, name, body.playback)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    return await stream(name)


@app.post("/api/v1/streams/{name}/playback-token", response_model=PlaybackToken, responses=ERRORS)
async def playback_token(name: str, body: PlaybackTokenRequest, request: Request, _: Admin) -> PlaybackToken:
    """A token (HS256 JWT with raylive's current playback key) that plays this stream: a signed URL."""
    await stream(name)  # 404 for a stream that does not exist
    kid, secret = await call(store.current_playback_key)
    token, exp = mint(kid, secret, name, body.ttl_s, body.ip)
    return PlaybackToken(token=token, expires_at=exp, playback_url=f"{_urls(request, name, '')[1]}?token={token}")


@app.post("/api/v1/playback/keys", response_model=PlaybackKey, responses=ERRORS)
async def rotate_playback_key(body: PlaybackKeyRotate, _: Admin) -> PlaybackKey:
    """A new current playback key; tokens signed with the keys before stay valid `overlap_s`."""
    kid, secret = await call(store.rotate_playback_key, body.overlap_s)
    return PlaybackKey(kid=kid, secret=base64.urlsafe_b64encode(secret).decode().rstrip("="))


@app.post("/api/v1/streams/{name}/revoke", response_model=StreamInfo, responses=ERRORS)
async def revoke(name: str, request: Request, _: Admin) -> dict[str, Any]:
    try:
        await call(store.revoke_stream, name)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    await _kick(name, "stream key revoked")
    return await stream(name)


@app.post("/api/v1/streams/{name}/stop", response_model=StreamInfo, responses=ERRORS)
async def stop(name: str, request: Request, _: Admin) -> dict[str, Any]:
    info = await stream(name)
    await _kick(name, "stopped through the API")
    return info


@app.delete("/api/v1/streams/{name}", status_code=204, responses=ERRORS)
async def delete(name: str, request: Request, _: Admin) -> None:
    try:
        await call(store.delete_stream, name)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    await _kick(name, "stream deleted")  # a live stream's actor removes what it writes as it ends
    await asyncio.to_thread(store.delete_stream_files, STATE.media_redis, name)


@serve.ingress(app)
class ControlApp:
    def __init__(
        self,
        redis_url: str,
        token_hash: str,
        rtmp_port: int,
        renditions: list[str],
        dashboard_url: str | None = None,
        recording_url: str = "",
    ) -> None:
        STATE.redis = aioredis.Redis.from_url(redis_url)  # pub/sub for WebSocket push
        STATE.sync_redis = redis.Redis.from_url(redis_url)  # raylive.store calls, on threads
        STATE.media_redis = redis.Redis.from_url(store.media_url(STATE.sync_redis, redis_url))
        STATE.admin_digest = token_hash
        STATE.rtmp_port = rtmp_port
        STATE.renditions = ["source", *renditions]
        STATE.dashboard_url = dashboard_url
        STATE.recordings = RecordingStore(recording_url) if recording_url else None


ControlDeployment = serve.deployment(name="control")(ControlApp)
