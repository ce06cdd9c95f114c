"""Configured limits on a real `raylive up`: streams per node, ingest bitrate, connections."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import psutil
import pytest

from ..conftest import RayliveProcess, start_raylive, stop_raylive
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e

LIMITS = "rtmp:\n  max_streams: 1\n  max_bitrate_kbps: 600\n  max_connections: 1000\n  handshake_timeout_s: 8\n"
LOW_BITRATE = ("-s", "160x96", "-b:v", "100k", "-maxrate", "100k", "-bufsize", "200k")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayliveProcess]:
    tmp = tmp_path_factory.mktemp("limits")
    (tmp / "limits.yaml").write_text(LIMITS)
    rl = start_raylive(tmp / "data", args=("--config", str(tmp / "limits.yaml")))
    yield rl
    assert stop_raylive(rl) == []


def test_max_streams_per_node_and_max_ingest_bitrate(limited: RayliveProcess) -> None:
    rl = limited
    small, big = rl.create_key("small"), rl.create_key("big")
    a = publish(rl.rtmp_url(small), seconds=None, extra=LOW_BITRATE)
    try:
        wait_for(playlist_ready(f"{rl.base_url}/live/small/index.m3u8"), 30, "the small stream to go live")
        refused = publish(rl.rtmp_url(big), seconds=5)
        assert refused.wait(30) != 0  # the node carries its one stream
        assert "limit of 1 streams" in rl.log() or get(f"{rl.base_url}/live/big/index.m3u8").status_code == 404
        # The small stream stays under 600 kb/s and is not disturbed.
        assert a.poll() is None
    finally:
        a.terminate()
        a.wait(10)
    # Its slot is free once the gateway has seen the publisher go (the stream then leaves "live").
    wait_for(lambda: rl.api("GET", "/api/v1/streams/small").json().get("state") != "live", 15, "small to leave live")
    b = publish(rl.rtmp_url(big), seconds=30)  # 640x360 ultrafast: well above 600 kb/s
    try:
        assert b.wait(30) != 0
        info = wait_for(
            lambda: (i := rl.api("GET", "/api/v1/streams/big").json()).get("state") == "ended" and i,
            15,
            "big to end",
            detail=lambda: (rl.api("GET", "/api/v1/streams/big").json(), rl.log()[-3000:]),
        )
        assert isinstance(info, dict) and "above this server's limit of 600 kb/s" in info["end_reason"], info
    finally:
        b.kill()


def _gateway(rl: RayliveProcess) -> psutil.Process:
    return next(p for p in psutil.Process(rl.proc.pid).children(recursive=True) if "ray::RtmpGateway" in " ".join(p.cmdline()))


def test_thousands_of_idle_connections_are_closed_and_streams_keep_flowing(limited: RayliveProcess) -> None:
    """2,000 clients from 200 addresses connect and send nothing, or only C0: the 1,000 over
    max_connections are closed at once, the rest when the 8 s handshake timeout ends; then 200
    from one address: all but 16 (rtmp.max_unpublished_per_address) are closed at once. A live
    stream keeps producing segments meanwhile and the gateway's memory stays bounded."""
    rl = limited
    a = publish(rl.rtmp_url(rl.create_key("steady")), seconds=None, extra=LOW_BITRATE)
    media = f"{rl.base_url}/live/steady/source/index.m3u8"
    socks: list[socket.socket] = []
    try:
        wait_for(playlist_ready(media), 30, "the steady stream to go live")
        gateway = _gateway(rl)
        rss_before = gateway.memory_info().rss
        segments_before = set(re.findall(r"^\S+\.m4s$", get(media).text, re.M))
        for i in range(2000):
            s = socket.create_connection(("127.0.0.1", rl.rtmp_port), timeout=10, source_address=(f"127.0.0.{2 + i % 200}", 0))
            if i % 2:
                s.sendall(b"\x03")  # C0 only: a truncated handshake
            socks.append(s)
        rss_flood = gateway.memory_info().rss

        def closed(s: socket.socket) -> bool:
            s.setblocking(False)
            try:
                return s.recv(1) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True  # reset by the server

        # The 1,000 over the limit are refused as fast as the gateway accepts them...
        wait_for(lambda: sum(closed(s) for s in socks) >= 990, 4, "the connections over the limit to be closed")
        # ...while those within it stay open until their handshake timeout.
        pending = [s for s in socks if not closed(s)]
        assert len(pending) >= 900, f"{len(pending)} of the 1,000 within the limit still open before their handshake timeout"
        # Meanwhile the live stream goes on.
        wait_for(lambda: set(re.findall(r"^\S+\.m4s$", get(media).text, re.M)) - segments_before, 10, "a new segment during the flood")
        wait_for(lambda: all(closed(s) for s in pending), 8 + 10, "the handshake timeout to close the rest")
        assert a.poll() is None
        one_address = [
            socket.create_connection(("127.0.0.1", rl.rtmp_port), timeout=10, source_address=("127.0.1.1", 0)) for _ in range(200)
        ]
        socks += one_address
        wait_for(lambda: sum(closed(s) for s in one_address) >= 184, 4, "the connections over the per-address limit to be closed")
        assert sum(not closed(s) for s in one_address) == 16
        assert a.poll() is None
        growth_mb = (rss_flood - rss_before) / 2**20
        print(f"gateway RSS {rss_before / 2**20:.0f} MB -> {rss_flood / 2**20:.0f} MB with 1,000 pending connections")
        assert growth_mb < 64, f"gateway RSS grew {growth_mb:.0f} MB with 1,000 pending connections"
    finally:
        for s in socks:
            s.close()
        a.terminate()
        a.wait(10)
