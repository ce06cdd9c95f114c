"""A real web player: hls.js in headless Chromium, on another origin, plays a live raylive stream."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e

HLSJS = Path(__file__).parent.parent / ".cache" / "hls.min.js"
CHROMIUM = "/usr/bin/chromium"

PAGE = """<!doctype html><html><body>
<video id="v" muted autoplay playsinline></video>
<script src="hls.min.js"></script>
<script>
  window.errors = []; window.stalls = [];
  const video = document.getElementById('v');
  const hls = new Hls({lowLatencyMode: false});
  window.hls = hls;
  hls.on(Hls.Events.ERROR, (_, d) => {
    if (d.fatal) window.errors.push(d.type + ':' + d.details);
    if (d.details === 'bufferStalledError') window.stalls.push(video.currentTime);
  });
  hls.loadSource(new URLSearchParams(location.search).get('src'));
  hls.attachMedia(video);
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
</script></body></html>
"""


@pytest.fixture(scope="module")
def player_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static page server on its own port: a different origin from raylive's, so CORS matters."""
    missing = [p for p in (HLSJS, Path(CHROMIUM)) if not p.exists()]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"missing {missing}: bash scripts/test installs them")
        pytest.skip(f"missing {missing}: run bash scripts/test to install them")
    root = tmp_path_factory.mktemp("player")
    (root / "index.html").write_text(PAGE)
    shutil.copy(HLSJS, root / "hls.min.js")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@contextmanager
def player(url: str) -> Iterator[Any]:
    """A headless Chromium page playing `url` with hls.js."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(url)
            yield page
        finally:
            browser.close()


def test_hlsjs_plays_live_stream_with_audio(raylive: RayliveProcess, player_origin: str) -> None:
    key = raylive.create_key("web1")
    master = f"{raylive.base_url}/live/web1/index.m3u8"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(master), 30, "web1 to go live")
        with player(f"{player_origin}/index.html?src={master}") as page:
            page.wait_for_function("document.getElementById('v').currentTime > 4 || window.errors.length > 0", timeout=60_000)
            state = page.evaluate(
                """() => { const v = document.getElementById('v'); return {
                    t: v.currentTime, w: v.videoWidth, h: v.videoHeight, errors: window.errors,
                    audioTracks: window.hls.audioTracks.length, levels: window.hls.levels.length,
                    decoded: v.getVideoPlaybackQuality().totalVideoFrames }; }"""
            )
    finally:
        ff.terminate()
        ff.wait(10)
    assert state["errors"] == []
    assert state["t"] > 4
    assert (state["w"], state["h"]) == (640, 360)
    assert state["audioTracks"] == 1 and state["levels"] == 1
    assert state["decoded"] > 60


def test_hlsjs_switches_ladder_renditions_without_a_stall(raylive: RayliveProcess, player_origin: str) -> None:
    created = raylive.api("POST", "/api/v1/streams", json={"name": "web2", "ladder": ["source", "240p"]}).json()
    master = f"{raylive.base_url}/live/web2/index.m3u8"
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(lambda: get(master).text.count("#EXT-X-STREAM-INF") == 2, 60, "web2 with its 240p rung")
        # A few segments in, as most viewers join: hls.js then starts 3 segments behind the live
        # edge with that much buffer, so a stall would mean the switch itself went wrong.
        rung = f"{raylive.base_url}/live/web2/240p/index.m3u8"
        wait_for(lambda: get(rung).text.count("#EXTINF") >= 4, 30, "4 segments of the 240p rung")
        with player(f"{player_origin}/index.html?src={master}") as page:
            page.wait_for_function("document.getElementById('v').currentTime > 2 || window.errors.length > 0", timeout=60_000)
            widths = page.evaluate("window.hls.levels.map(l => l.width)")
            assert sorted(widths) == [426, 640]
            switched_at = page.evaluate("document.getElementById('v').currentTime")
            for width in (426, 640, 426):
                # nextLevel: the switch a player's ABR makes, at the next segment, without flushing.
                page.evaluate(f"window.hls.nextLevel = window.hls.levels.findIndex(l => l.width === {width})")
                page.wait_for_function(f"document.getElementById('v').videoWidth === {width} || window.errors.length > 0", timeout=30_000)
                t = page.evaluate("document.getElementById('v').currentTime")
                page.wait_for_function(f"document.getElementById('v').currentTime > {t} + 1 || window.errors.length > 0", timeout=30_000)
            state = page.evaluate("() => ({errors: window.errors, stalls: window.stalls, w: document.getElementById('v').videoWidth})")
    finally:
        ff.terminate()
        ff.wait(10)
    assert state["errors"] == [] and state["w"] == 426
    assert [t for t in state["stalls"] if t >= switched_at] == [], state
