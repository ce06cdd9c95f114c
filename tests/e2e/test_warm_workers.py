"""Warm workers (`rtmp.warm_workers`): the gateway keeps Ray workers started on its node, a new
stream's actor starts in one of them instead of a new process, and the pool is filled again."""

from __future__ import annotations

import psutil
import pytest

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e


def idle_workers(raylive: RayliveProcess) -> set[int]:
    """This raylive's Ray workers that run nothing (`ray::IDLE`, children of its raylet)."""
    found = set()
    for p in psutil.Process(raylive.proc.pid).children(recursive=True):
        try:
            if p.cmdline()[:1] == ["ray::IDLE"] and "raylet" in p.parent().name():
                found.add(p.pid)
        except psutil.Error:
            pass
    return found


def test_a_new_stream_starts_in_a_warm_worker_and_the_pool_refills(raylive: RayliveProcess) -> None:
    warm = wait_for(lambda: w if len(w := idle_workers(raylive)) >= 2 else None, 60, "2 warm workers (the default)")
    assert isinstance(warm, set)
    created = raylive.api("POST", "/api/v1/streams", json={"name": "warm1", "ladder": ["source"]}).json()
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/warm1/index.m3u8"), 30, "warm1 to go live")
        pid = raylive.api("GET", "/api/v1/streams/warm1").json()["pid"]
        assert pid in warm, (pid, warm)  # no process was started for it
        # The pool is topped up again while the stream runs.
        wait_for(lambda: len(idle_workers(raylive) - warm) >= 1 and len(idle_workers(raylive)) >= 2, 30, "the pool refilled")
        assert get(f"{raylive.base_url}/live/warm1/source/index.m3u8").status_code == 200
    finally:
        ff.kill()
