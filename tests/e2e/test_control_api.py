"""The control API against a real `raylive up` (real Redis, real Ray Serve), plus live viewers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e


def test_management_endpoints_need_the_token(raylive: RayliveProcess) -> None:
    for token in ("-", "wrong-token"):
        r = raylive.api("GET", "/api/v1/streams", token=token)
        assert r.status_code == 401 and r.json() == {"error": "missing or invalid bearer token"}
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.post(f"{raylive.base_url}/api/v1/streams", json={"name": "x1"}).status_code == 401
    assert raylive.api("GET", "/api/v1/streams").status_code == 200
    assert get(f"{raylive.base_url}/healthz").status_code == 200  # public


def test_openapi_document_validates(raylive: RayliveProcess) -> None:
    spec = get(f"{raylive.base_url}/openapi.json").json()
    validate(spec)
    paths = set(spec["paths"])
    assert {"/api/v1/streams", "/api/v1/streams/{name}", "/api/v1/streams/{name}/key/rotate", "/api/v1/streams/{name}/revoke",
            "/api/v1/streams/{name}/stop"} <= paths  # fmt: skip
    assert get(f"{raylive.base_url}/docs").status_code == 200


def test_stream_crud_rotate_and_errors(raylive: RayliveProcess) -> None:
    r = raylive.api("POST", "/api/v1/streams", json={"name": "api1"})
    assert r.status_code == 201
    created = r.json()
    assert created["name"] == "api1" and len(created["key"]) >= 24
    assert created["publish_url"].endswith(f"/live/{created['key']}") and created["playback_url"].endswith("/live/api1/index.m3u8")
    assert raylive.api("POST", "/api/v1/streams", json={"name": "api1"}).status_code == 409
    bad = raylive.api("POST", "/api/v1/streams", json={"name": "bad name!"})
    assert bad.status_code == 422 and "stream names are" in bad.json()["error"]
    assert raylive.api("POST", "/api/v1/streams", json={}).status_code == 422

    info = raylive.api("GET", "/api/v1/streams/api1").json()
    assert info["state"] == "idle" and info["viewers"] == 0 and info["revoked"] is False and "key" not in info
    assert "api1" in [s["name"] for s in raylive.api("GET", "/api/v1/streams").json()]
    assert raylive.api("GET", "/api/v1/streams/nope").status_code == 404

    rotated = raylive.api("POST", "/api/v1/streams/api1/key/rotate").json()
    assert rotated["key"] != created["key"]
    old = publish(raylive.rtmp_url(created["key"]), 2)
    assert old.wait(30) != 0  # the old key stopped working
    assert raylive.api("POST", "/api/v1/streams/nope/key/rotate").status_code == 404

    # Per-stream ladder: names checked against the configured renditions.
    assert info["ladder"] is None
    r = raylive.api("PUT", "/api/v1/streams/api1/ladder", json={"ladder": ["source", "360p"]})
    assert r.status_code == 200 and r.json()["ladder"] == ["source", "360p"]
    bad = raylive.api("PUT", "/api/v1/streams/api1/ladder", json={"ladder": ["source", "4k"]})
    assert bad.status_code == 422 and "'4k'" in bad.json()["error"] and "480p" in bad.json()["error"]
    assert raylive.api("PUT", "/api/v1/streams/nope/ladder", json={"ladder": None}).status_code == 404
    assert raylive.api("PUT", "/api/v1/streams/api1/ladder", json={"ladder": None}).json()["ladder"] is None
    assert raylive.api("POST", "/api/v1/streams", json={"name": "api1b", "ladder": ["8k"]}).status_code == 422
    out = raylive.cli("keys", "create", "api1c", "--ladder", "source,240p")
    assert out.returncode == 0 and raylive.api("GET", "/api/v1/streams/api1c").json()["ladder"] == ["source", "240p"]

    assert raylive.api("DELETE", "/api/v1/streams/api1").status_code == 204
    assert raylive.api("GET", "/api/v1/streams/api1").status_code == 404
    assert raylive.api("DELETE", "/api/v1/streams/api1").status_code == 404


@pytest.mark.parametrize("action", ["revoke", "stop"])
def test_revoke_or_stop_disconnects_a_live_publisher_and_ends_the_playlist(raylive: RayliveProcess, action: str) -> None:
    name = f"kick-{action}"
    key = raylive.api("POST", "/api/v1/streams", json={"name": name}).json()["key"]
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/{name}/index.m3u8"), 30, f"{name} to go live")
        assert raylive.api("GET", f"/api/v1/streams/{name}").json()["state"] == "live"
        asked = time.monotonic()
        assert raylive.api("POST", f"/api/v1/streams/{name}/{action}").status_code == 200
        wait_for(lambda: ff.poll() is not None, 5, "the publisher to be disconnected")
        assert time.monotonic() - asked < 2.0  # within 1 s of the actor seeing it, plus ffmpeg's exit
    finally:
        ff.kill()
    media = wait_for(
        lambda: t if "#EXT-X-ENDLIST" in (t := get(f"{raylive.base_url}/live/{name}/source/index.m3u8").text) else None, 10, "ENDLIST"
    )
    assert media
    info = raylive.api("GET", f"/api/v1/streams/{name}").json()
    assert info["state"] == "ended" and info["revoked"] is (action == "revoke")


class Viewer(threading.Thread):
    """A player-like client: master playlist once (gets a sid, carried in its media playlist URL),
    then media playlist + newest segment each second. Segment URLs are the same for every viewer."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.stop = threading.Event()
        self.sid = ""
        self.fetches = 0

    def run(self) -> None:
        with httpx.Client(timeout=10) as c:
            master = c.get(f"{self.base}/index.m3u8").text
            uri = next(line for line in master.splitlines() if line.startswith("source/"))
            self.sid = uri.split("sid=")[1]
            while not self.stop.is_set():
                media = c.get(f"{self.base}/{uri}").text
                segs = [line for line in media.splitlines() if line.endswith(".m4s") and not line.startswith("#")]
                if segs:
                    assert c.get(f"{self.base}/source/{segs[-1]}").status_code == 200
                self.fetches += 1
                self.stop.wait(1.0)


def test_websocket_pushes_status_events_and_viewer_counts(raylive: RayliveProcess) -> None:
    name, n = "wsview", 4
    key = raylive.api("POST", "/api/v1/streams", json={"name": name}).json()["key"]
    ticket = raylive.api("POST", "/api/v1/ws-tickets").json()["ticket"]
    ws_url = f"ws://127.0.0.1:{raylive.http_port}/api/v1/ws/streams/{name}?ticket={ticket}"
    messages: list[dict[str, Any]] = []

    async def watch(stop: asyncio.Event) -> None:
        async with websockets.connect(ws_url) as ws:
            while not stop.is_set():
                try:
                    messages.append(json.loads(await asyncio.wait_for(ws.recv(), 0.5)))
                except TimeoutError:
                    pass

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    watcher = threading.Thread(target=loop.run_until_complete, args=(watch(stop),), daemon=True)
    watcher.start()
    ff = publish(raylive.rtmp_url(key), seconds=None)
    viewers = [Viewer(f"{raylive.base_url}/live/{name}") for _ in range(n)]
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/{name}/index.m3u8"), 30, f"{name} to go live")
        wait_for(lambda: any(m.get("type") == "event" and m["event"] == "publish" for m in messages), 10, "a publish event")
        started = time.monotonic()
        for v in viewers:
            v.start()
        status = lambda: [m for m in messages if m.get("type") == "status"]  # noqa: E731
        wait_for(
            lambda: status() and status()[-1]["viewers"] == n,
            15,
            f"{n} viewers on the WebSocket",
            detail=lambda: (status()[-2:], watcher.is_alive(), raylive.api("GET", f"/api/v1/streams/{name}").text),
        )
        assert time.monotonic() - started < 4  # 3 s as specified, plus the viewers' own first fetches
        last = messages[-1]
        assert last["state"] == "live" and last["bitrate_kbps"] > 0 and last["fps"] > 0
        # Status comes at least once a second.
        times = [m["time"] for m in messages if m.get("type") == "status"][-4:]
        assert all(b - a <= 1.5 for a, b in zip(times, times[1:], strict=False))
        info = raylive.api("GET", f"/api/v1/streams/{name}").json()
        assert info["viewers"] == n and info["peak_viewers"] >= n and info["unique_viewers"] == n
        assert info["viewers_by_rendition"]["source"] == n
        # Watch time needs each session seen over more than one flush: on a loaded machine the
        # viewers may not have made more than one round yet.
        wait_for(lambda: all(v.fetches >= 3 for v in viewers), 30, "3 rounds per viewer")
    finally:
        for v in viewers:
            v.stop.set()
        ff.terminate()
        ff.wait(10)
    wait_for(lambda: any(m.get("type") == "event" and m["event"] == "unpublish" for m in messages), 10, "an unpublish event")
    wait_for(lambda: status()[-1]["viewers"] == 0, 35, "the viewer count to fall to 0")
    info = raylive.api("GET", f"/api/v1/streams/{name}").json()
    assert info["peak_viewers"] >= n and info["watch_time_s"] > 0
    loop.call_soon_threadsafe(stop.set)
    watcher.join(10)


def test_websockets_take_a_one_time_ticket_never_the_token(raylive: RayliveProcess) -> None:
    async def attempt(query: str, headers: dict[str, str] | None = None) -> int | str | None:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{raylive.http_port}/api/v1/ws/streams{query}", additional_headers=headers) as ws:
                try:
                    return str(json.loads(await asyncio.wait_for(ws.recv(), 2))["type"])
                except TimeoutError:
                    return "open"  # accepted (no stream to report on right now)
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        return None

    ticket = raylive.api("POST", "/api/v1/ws-tickets").json()["ticket"]
    assert asyncio.run(attempt(f"?ticket={ticket}")) in ("status", "open")
    assert asyncio.run(attempt(f"?ticket={ticket}")) in (4401, 403)  # spent
    assert asyncio.run(attempt(f"?token={raylive.token}")) in (4401, 403)  # a token in a URL is not taken
    assert asyncio.run(attempt("?ticket=nope")) in (4401, 403)
    assert asyncio.run(attempt("", {"Authorization": f"Bearer {raylive.token}"})) in ("status", "open")  # a client that sends headers


def test_api_tokens_have_scopes(raylive: RayliveProcess) -> None:
    made = {}
    for name, scopes in (("dash", ["read"]), ("research", ["analytics"])):
        r = raylive.api("POST", "/api/v1/tokens", json={"name": name, "scopes": scopes})
        assert r.status_code == 201, r.text
        made[name] = r.json()["token"]
    assert raylive.api("POST", "/api/v1/tokens", json={"name": "dash", "scopes": ["read"]}).status_code == 409
    assert raylive.api("POST", "/api/v1/tokens", json={"name": "x", "scopes": ["root"]}).status_code == 422
    listed = raylive.api("GET", "/api/v1/tokens").json()
    assert {t["name"]: t["scopes"] for t in listed}.items() >= {"dash": ["read"], "research": ["analytics"]}.items()
    assert made["dash"] not in json.dumps(listed)
    dash, research = made["dash"], made["research"]
    assert raylive.api("GET", "/api/v1/streams", token=dash).status_code == 200
    assert raylive.api("GET", "/metrics", token=dash).status_code == 200
    assert raylive.api("POST", "/api/v1/ws-tickets", token=dash).status_code == 201
    refused = raylive.api("POST", "/api/v1/streams", token=dash, json={"name": "bydash"})
    assert refused.status_code == 403 and "lacks the 'admin' scope" in refused.json()["error"], refused.text
    sql = {"sql": "SELECT 1"}
    assert raylive.api("POST", "/api/v1/analytics/sql", token=dash, json=sql).status_code == 403
    assert raylive.api("POST", "/api/v1/analytics/sql", token=research, json=sql).status_code == 200
    assert raylive.api("GET", "/api/v1/tokens", token=research).status_code == 403
    assert raylive.api("DELETE", "/api/v1/tokens/dash").status_code == 204
    assert raylive.api("GET", "/api/v1/streams", token=dash).status_code == 401


def test_fuzzing_the_management_api_finds_no_server_error(raylive: RayliveProcess) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{raylive.base_url}/openapi.json")
    auth = {"Authorization": f"Bearer {raylive.token}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()

        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=raylive.base_url, headers=auth)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        check()
    assert failures == []
