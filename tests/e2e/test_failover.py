"""Reliability end to end: the stream actor killed with SIGKILL mid-publish; Ray restarts it and
the same publisher's stream continues in the same playlists after a discontinuity."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e


def test_killed_stream_actor_restarts_and_the_stream_continues(raylive: RayliveProcess) -> None:
    key = raylive.create_key("fo1")
    base = f"{raylive.base_url}/live/fo1"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    statuses: list[int] = []
    stop = threading.Event()

    def poll_master() -> None:  # a player reloading the multivariant playlist throughout
        while not stop.is_set():
            statuses.append(get(f"{base}/index.m3u8").status_code)
            stop.wait(0.2)

    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "fo1 to go live")
        wait_for(lambda: get(f"{base}/source/index.m3u8").text.count("#EXTINF") >= 2, 20, "2 segments")
        poller = threading.Thread(target=poll_master)
        poller.start()
        before = get(f"{base}/source/index.m3u8").text
        listed = [line for line in before.splitlines() if line.endswith(".m4s")]
        pid = raylive.api("GET", "/api/v1/streams/fo1").json()["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        def continued() -> str | None:
            text = get(f"{base}/source/index.m3u8").text
            after = text.split("#EXT-X-DISCONTINUITY")
            return text if len(after) == 2 and "#EXTINF" in after[1] else None

        text = wait_for(continued, 20, "a segment after the restart", detail=lambda: get(f"{base}/source/index.m3u8").text)
        restart_to_segment = time.monotonic() - killed
        assert isinstance(text, str)
        assert raylive.api("GET", "/api/v1/streams/fo1").json()["pid"] != pid
        assert ff.poll() is None  # the publisher never noticed
    finally:
        stop.set()
        ff.kill()
    assert set(statuses) == {200}, statuses  # the multivariant playlist never 404ed
    seq_before = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", before)[1])  # type: ignore[index]
    seq_after = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])  # type: ignore[index]
    assert seq_after >= seq_before
    # Segments listed before the kill are still listed (window permitting) and still served.
    still = [s for s in listed if s in text]
    assert still and all(get(f"{base}/source/{s}").status_code == 200 for s in listed)
    print(f"restart to first new segment: {restart_to_segment:.1f}s")
    assert restart_to_segment < 12


def kill_the_gateway(raylive: RayliveProcess) -> None:
    """SIGKILL the (single) RTMP gateway actor's process of this raylive."""
    gateways = [p for p in psutil.Process(raylive.proc.pid).children(recursive=True) if "ray::RtmpGateway" in " ".join(p.cmdline())]
    assert len(gateways) == 1
    gateways[0].send_signal(signal.SIGKILL)


def test_a_killed_gateway_restarts_and_publishers_reconnect_into_their_playlists(raylive: RayliveProcess) -> None:
    key = raylive.create_key("fo2")
    base = f"{raylive.base_url}/live/fo2"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "fo2 to go live")
        kill_the_gateway(raylive)
        assert ff.wait(30) != 0  # its connection went with the gateway
        killed = time.monotonic()

        def accepted() -> bool:  # the restarted gateway takes the same publisher back
            nonlocal ff
            if ff.poll() is not None:
                ff = publish(raylive.rtmp_url(key), seconds=None)
            text = get(f"{base}/source/index.m3u8").text
            return "#EXT-X-DISCONTINUITY" in text and ".m4s" in text.split("#EXT-X-DISCONTINUITY")[-1]

        wait_for(accepted, 40, "the publisher to be back in its playlist", interval_s=1)
        print(f"gateway kill to first segment of the reconnected publisher: {time.monotonic() - killed:.1f}s")
        assert "#EXT-X-ENDLIST" not in get(f"{base}/source/index.m3u8").text
    finally:
        ff.kill()


def test_raylive_gateway_joins_the_running_cluster(raylive: RayliveProcess) -> None:
    """`raylive gateway` on a node that has one already gets that one (idempotent), listening."""
    runtime = json.loads((raylive.data_dir / "raylive.json").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "raylive.cli", "gateway", "--address", runtime["ray_address"], "--redis-url", runtime["redis_url"],
         "--rtmp-port", str(raylive.rtmp_port), "--host", "127.0.0.1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"rtmp://127.0.0.1:{raylive.rtmp_port}/live/<stream-key>" in out.stdout
    key = raylive.create_key("fo3")
    ff = publish(raylive.rtmp_url(key), 4)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/fo3/index.m3u8"), 30, "fo3 to go live through the gateway")
    finally:
        ff.kill()


def test_a_stream_whose_gateway_died_ends_when_its_publisher_stays_away(raylive: RayliveProcess) -> None:
    key = raylive.create_key("fo4")
    base = f"{raylive.base_url}/live/fo4"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "fo4 to go live")
        # Nobody will tell the stream actor: its gateway dies, and `raylive up` (the supervisor) is
        # stopped too. The actor's own clock must end the stream after the reconnect grace.
        os.kill(raylive.proc.pid, signal.SIGSTOP)
        killed = time.monotonic()
        kill_the_gateway(raylive)
        assert ff.wait(30) != 0
        text = wait_for(lambda: t if "#EXT-X-ENDLIST" in (t := get(f"{base}/source/index.m3u8").text) else None, 40, "ENDLIST")
        ended_after = time.monotonic() - killed
    finally:
        os.kill(raylive.proc.pid, signal.SIGCONT)
        ff.kill()
        # Leave the shared raylive as we found it: the restarted gateway listens again once the
        # supervisor runs (every 2 s); the next test's publisher must not meet a closed port.
        wait_for(lambda: _accepts(raylive.rtmp_port), 30, "the restarted gateway to listen again")
    assert isinstance(text, str)
    info = raylive.api("GET", "/api/v1/streams/fo4").json()
    assert info["state"] == "ended" and "vanished" in info["end_reason"], info
    # reconnect grace (10 s) + the 3 s a holder may be silent + one tick and the last writes
    print(f"gateway killed -> ENDLIST in {ended_after:.1f}s")
    assert ended_after < 10 + 3 + 4


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
