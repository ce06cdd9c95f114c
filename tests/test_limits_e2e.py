"""Configured limits on a real `raylive up`: streams per node and ingest bitrate."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import start_raylive, stop_raylive
from .helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e


def test_max_streams_per_node_and_max_ingest_bitrate(tmp_path: Path) -> None:
    config = tmp_path / "limits.yaml"
    config.write_text("rtmp:\n  max_streams: 1\n  max_bitrate_kbps: 600\n")
    rl = start_raylive(tmp_path / "data", args=("--config", str(config)))
    try:
        small, big = rl.create_key("small"), rl.create_key("big")
        low = ("-s", "160x96", "-b:v", "100k", "-maxrate", "100k", "-bufsize", "200k")
        a = publish(rl.rtmp_url(small), seconds=None, extra=low)
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
        b = publish(rl.rtmp_url(big), seconds=30)  # 640x360 ultrafast: well above 600 kb/s
        try:
            assert b.wait(30) != 0
            info = wait_for(lambda: (i := rl.api("GET", "/api/v1/streams/big").json()).get("state") == "ended" and i, 15, "big to end")
            assert isinstance(info, dict) and "above this server's limit of 600 kb/s" in info["end_reason"], info
        finally:
            b.kill()
    finally:
        assert stop_raylive(rl) == []
