"""HEVC and AV1 from a PyAV broadcaster (FFmpeg 8 writes Enhanced RTMP): the source is served as
it came, with its codec string, and H.264 rungs give every player something it can decode."""

from __future__ import annotations

import json
import re
import subprocess
import threading

import pytest

from ..conftest import RayliveProcess
from ..helpers import get, pyav_publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("codec", "codec_prefix", "ffprobe_name"), [("hevc", "hvc1.", "hevc"), ("av1", "av01.", "av1")])
def test_hevc_and_av1_play_as_published_and_as_h264(
    raylive: RayliveProcess, player_origin: str, codec: str, codec_prefix: str, ffprobe_name: str
) -> None:
    name = f"ertmp{codec}"
    created = raylive.api("POST", "/api/v1/streams", json={"name": name, "ladder": ["source", "240p"]}).json()
    failed: list[BaseException] = []

    def broadcast() -> None:
        try:
            pyav_publish(raylive.rtmp_url(created["key"]), codec, seconds=20, size=(426, 240), realtime=True)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            failed.append(exc)

    publisher = threading.Thread(target=broadcast, daemon=True)
    publisher.start()
    try:
        master_url = f"{raylive.base_url}/live/{name}/index.m3u8"
        master = wait_for(lambda: (t := get(master_url).text).count("#EXT-X-STREAM-INF") == 2 and t, 40, f"{name} and its rung")
        assert isinstance(master, str)
        codecs = re.findall(r'CODECS="([^"]+)"', master)
        # The source keeps its codec; the same-height rung is H.264 (a player without HEVC/AV1 plays it).
        assert any(c.startswith(codec_prefix) for c in codecs) and any(c.startswith("avc1.") for c in codecs), codecs
        assert master.count("RESOLUTION=426x240") == 2
        source = f"{raylive.base_url}/live/{name}/source/index.m3u8"
        wait_for(lambda: get(source).text.count("#EXTINF") >= 3, 30, "3 source segments")
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=codec_name,width,height,nb_read_frames", "-of", "json", source],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        stream = json.loads(probe.stdout)["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"]) == (ffprobe_name, 426, 240), probe.stderr
        assert int(stream["nb_read_frames"]) >= 90, probe.stderr
        with browser_page(page_url(player_origin, "hls", master_url, {"lowLatencyMode": False})) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 3 || window.errors.length > 0", timeout=60_000)
            first = page.evaluate("window.player.levels[window.player.currentLevel].videoCodec")
            # Then the H.264 rung by name, as a browser without the source's decoder would play it.
            page.evaluate("window.player.currentLevel = window.player.levels.findIndex(l => l.videoCodec.startsWith('avc1'))")
            t = page.evaluate("document.getElementById('v').currentTime")
            page.wait_for_function(f"document.getElementById('v').currentTime > {t} + 2 || window.errors.length > 0", timeout=30_000)
            state = video_state(page)
            playing = page.evaluate("window.player.levels[window.player.currentLevel].videoCodec")
        print(f"hls.js chose {first}, then played {playing}")
        assert state["errors"] == [] and playing.startswith("avc1.") and (state["w"], state["h"]) == (426, 240), state
    finally:
        publisher.join(40)
    assert not failed, failed
    info = raylive.api("GET", f"/api/v1/streams/{name}").json()
    assert info["video_codec"].startswith(codec_prefix), info
