"""The two Redis servers of a real `raylive up`: media bounded and never persisted, state durable."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx
import psutil
import pytest
import redis

from raylive import store

from ..conftest import RayliveProcess
from ..helpers import playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e
PUBLISH_S = 60  # twice the default segment TTL (2 x 12 s window + 2 s + 4 s = 30 s)


def servers(raylive: RayliveProcess) -> tuple[redis.Redis, redis.Redis]:
    """The state and the media Redis of the shared `raylive up`."""
    record = json.loads((raylive.data_dir / "raylive.json").read_text())
    assert record["media_redis_url"] != record["redis_url"]
    return redis.Redis.from_url(record["redis_url"]), redis.Redis.from_url(record["media_redis_url"])


def publish_new(raylive: RayliveProcess, name: str) -> subprocess.Popen[bytes]:
    key = raylive.api("POST", "/api/v1/streams", json={"name": name, "ladder": ["source"]}).json()["key"]
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/{name}/source/index.m3u8"), 30, f"{name} to go live")
    except BaseException:
        ff.kill()
        raise
    return ff


def test_media_in_redis_stays_near_what_the_playlists_name(raylive: RayliveProcess) -> None:
    state, media = servers(raylive)
    assert media.config_get("save") == {"save": ""} and media.config_get("appendonly") == {"appendonly": "no"}
    assert int(media.config_get("maxmemory")["maxmemory"]) > 0
    assert state.config_get("appendonly") == {"appendonly": "yes"} and state.config_get("save") == {"save": ""}
    name = "bounded"
    ff = publish_new(raylive, name)
    base = f"{raylive.base_url}/live/{name}"
    try:
        time.sleep(PUBLISH_S)
        assert ff.poll() is None
        named = 0
        for rendition in ("source", "audio"):
            playlist = httpx.get(f"{base}/{rendition}/index.m3u8", timeout=10).text
            for uri in re.findall(r"^(\S+\.m4s)$", playlist, re.M) + re.findall(r'URI="([^"]+)"', playlist):
                named += len(httpx.get(f"{base}/{rendition}/{uri}", timeout=10).content)
        stored = sum(media.strlen(k) for k in media.scan_iter(match=store.file_key(name, "*"), count=1000))
        print(f"after {PUBLISH_S} s: media Redis holds {stored / 2**20:.1f} MiB for {name}; its playlists name {named / 2**20:.1f} MiB")
        # The window (6 segments) is named; a segment lives 2 windows + a segment + 4 s. With a
        # fixed 120 s TTL this was 5x after 60 s and 10x after 4 minutes.
        assert stored < 3.2 * named, (stored, named)
        assert not state.keys(store.file_key(name, "*")), "segments in the state Redis"
    finally:
        ff.terminate()
        ff.wait(10)


def test_a_stream_deleted_while_live_leaves_no_key_file_or_actor(raylive: RayliveProcess) -> None:
    state, media = servers(raylive)
    name = "doomed"
    ff = publish_new(raylive, name)
    base = f"{raylive.base_url}/live/{name}"
    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 10, f"{name}'s multivariant playlist")
        sid = re.search(r"sid=([\w-]+)", httpx.get(f"{base}/index.m3u8", timeout=10).text)[1]  # type: ignore[index]
        assert httpx.get(f"{base}/source/index.m3u8?sid={sid}", timeout=10).status_code == 200  # a viewer
        pid = int(raylive.api("GET", f"/api/v1/streams/{name}").json()["pid"])
        wait_for(lambda: raylive.api("GET", f"/api/v1/streams/{name}").json()["viewers"] >= 1, 10, "the viewer to be counted")
        assert raylive.api("DELETE", f"/api/v1/streams/{name}").status_code == 204
        assert ff.wait(15) is not None  # the publisher was disconnected

        def leftovers() -> list[bytes]:
            files = list(media.scan_iter(match=f"*{name}*", count=1000))
            return files + [k for k in state.scan_iter(match=f"*{name}*", count=1000)]

        wait_for(lambda: not leftovers(), 15, "no key of the deleted stream", detail=leftovers)
        assert httpx.get(f"{base}/index.m3u8", timeout=10).status_code == 404
        assert raylive.api("GET", f"/api/v1/streams/{name}").status_code == 404
        from raylive.actors.stream import ENDED_EXIT_S

        wait_for(
            lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
            ENDED_EXIT_S + 20,
            "its actor to exit",
        )
        assert not leftovers(), leftovers()  # nothing came back as the actor ended
    finally:
        ff.kill()
