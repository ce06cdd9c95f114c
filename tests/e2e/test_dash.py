"""DASH from the same CMAF segments, in real players: dash.js plays the MPD live (low latency: the
segment being written is streamed part by part) and after the stream ended; Shaka Player plays
both the HLS and the DASH presentation. Players on another origin, as on a real site."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from ..conftest import RayliveProcess
from ..helpers import get, publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = pytest.mark.e2e

DASHJS_LOW_LATENCY = {"streaming": {"delay": {"liveDelay": 1.2}, "liveCatchup": {"enabled": True}}}


def test_dashjs_plays_live_with_low_latency_then_the_ended_stream(raylive: RayliveProcess, player_origin: str) -> None:
    created = raylive.api("POST", "/api/v1/streams", json={"name": "dash1", "ladder": ["source", "240p"]}).json()
    mpd = f"{raylive.base_url}/live/dash1/index.mpd"
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(lambda: get(mpd).text.count("<Representation") == 3, 60, "the MPD with both video renditions and audio")
        # The segment being written is served as it is made: its first bytes come at once, the rest
        # part by part, and the whole is the segment the playlist will list.
        with httpx.Client(timeout=10) as http:
            playlist = http.get(f"{raylive.base_url}/live/dash1/source/index.m3u8").text
            # The segment after the one being written: asked before it begins (as a player with
            # availabilityTimeOffset may), held until its first part, then sent as it is made.
            epoch, number = playlist.split('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="')[1].split(".")[0].split("-")
            writing = f"{epoch}-{int(number) + 1}.m4s"
            t0 = time.monotonic()
            with http.stream("GET", f"{raylive.base_url}/live/dash1/source/{writing}") as r:
                assert r.status_code == 200 and "content-length" not in r.headers
                chunks = [(time.monotonic() - t0, len(c)) for c in r.iter_raw()]
            assert chunks[-1][0] - chunks[0][0] > 1.2  # streamed over the segment's 2 s, not at its end
            assert sum(n for _, n in chunks) == len(http.get(f"{raylive.base_url}/live/dash1/source/{writing}").content)
        with browser_page(page_url(player_origin, "dash", mpd, DASHJS_LOW_LATENCY)) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 3 || window.errors.length > 0", timeout=60_000)
            page.evaluate("window.lat = []")
            page.wait_for_timeout(6_000)
            state = video_state(page)
            bitrates = page.evaluate("window.player.getRepresentationsByType('video').map(r => r.height)")
        assert state["errors"] == [], state["errors"]
        assert sorted(bitrates) == [240, 360]
        median = statistics.median(state["lat"])
        print(f"dash.js live latency: median {median:.2f} s over {len(state['lat'])} samples")
        assert 0.3 < median < 4.0, state["lat"]
    finally:
        ff.terminate()
        ff.wait(10)
    # Ended: the MPD turns static and still plays from its start.
    wait_for(lambda: 'type="static"' in get(mpd).text, 20, "the MPD to become static")
    with browser_page(page_url(player_origin, "dash", mpd)) as page:
        page.wait_for_function("document.getElementById('v').currentTime > 2 || window.errors.length > 0", timeout=60_000)
        state = video_state(page)
    assert state["errors"] == [] and state["t"] > 2


@pytest.mark.parametrize("manifest", ["index.m3u8", "index.mpd"])
def test_shaka_player_plays_hls_and_dash(raylive: RayliveProcess, player_origin: str, manifest: str) -> None:
    name = "shaka" + manifest.split(".")[1]
    key = raylive.create_key(name)
    url = f"{raylive.base_url}/live/{name}/{manifest}"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(lambda: get(f"{raylive.base_url}/live/{name}/source/index.m3u8").text.count("#EXTINF") >= 2, 30, f"{name} live")
        with browser_page(page_url(player_origin, "shaka", url)) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 4 || window.errors.length > 0", timeout=60_000)
            state = video_state(page)
    finally:
        ff.terminate()
        ff.wait(10)
    assert state["errors"] == [], state["errors"]
    assert state["t"] > 4 and (state["w"], state["h"]) == (640, 360)
