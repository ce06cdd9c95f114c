"""A real web player: hls.js in headless Chromium, on another origin, plays a live raylive stream,
as a classic HLS player and in low-latency mode."""

from __future__ import annotations

import statistics

import pytest

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = pytest.mark.e2e


def test_hlsjs_plays_live_stream_with_audio(raylive: RayliveProcess, player_origin: str) -> None:
    key = raylive.create_key("web1")
    master = f"{raylive.base_url}/live/web1/index.m3u8"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(master), 30, "web1 to go live")
        with browser_page(page_url(player_origin, "hls", master, {"lowLatencyMode": False})) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 4 || window.errors.length > 0", timeout=60_000)
            state = video_state(page)
            tracks = page.evaluate("[window.player.audioTracks.length, window.player.levels.length]")
    finally:
        ff.terminate()
        ff.wait(10)
    assert state["errors"] == []
    assert state["t"] > 4
    assert (state["w"], state["h"]) == (640, 360)
    assert tracks == [1, 1]
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
        with browser_page(page_url(player_origin, "hls", master, {"lowLatencyMode": False})) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 2 || window.errors.length > 0", timeout=60_000)
            widths = page.evaluate("window.player.levels.map(l => l.width)")
            assert sorted(widths) == [426, 640]
            switched_at = page.evaluate("document.getElementById('v').currentTime")
            for width in (426, 640, 426):
                # nextLevel: the switch a player's ABR makes, at the next segment, without flushing.
                page.evaluate(f"window.player.nextLevel = window.player.levels.findIndex(l => l.width === {width})")
                page.wait_for_function(f"document.getElementById('v').videoWidth === {width} || window.errors.length > 0", timeout=30_000)
                t = page.evaluate("document.getElementById('v').currentTime")
                page.wait_for_function(f"document.getElementById('v').currentTime > {t} + 1 || window.errors.length > 0", timeout=30_000)
            state = video_state(page)
    finally:
        ff.terminate()
        ff.wait(10)
    assert state["errors"] == [] and state["w"] == 426
    assert [t for t in state["stalls"] if t >= switched_at] == [], state


# hls.js's low-latency mode with catch-up (the usual LL-HLS set-up): it aims at PART-HOLD-BACK
# behind the edge and plays up to 1.5x faster while further behind and holding over 1 s of buffer.
LOW_LATENCY = {"lowLatencyMode": True, "maxLiveSyncPlaybackRate": 1.5}


def test_hlsjs_low_latency_plays_every_rendition_close_to_live(raylive: RayliveProcess, player_origin: str) -> None:
    """Every rendition in LL mode, switched like an ABR switch, never a fatal error, and the latency a
    viewer sees (wall clock minus the on-screen frame's PROGRAM-DATE-TIME, which is the frame's arrival
    at ingest) under a generous bound on a 2-core machine running the publisher and raylive."""
    created = raylive.api("POST", "/api/v1/streams", json={"name": "llweb", "ladder": ["source", "240p"]}).json()
    master = f"{raylive.base_url}/live/llweb/index.m3u8"
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(lambda: get(master).text.count("#EXT-X-STREAM-INF") == 2, 60, "llweb with its 240p rung")
        with browser_page(page_url(player_origin, "hls", master, LOW_LATENCY)) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 2 || window.errors.length > 0", timeout=60_000)
            latency: dict[int, list[float]] = {}
            for width in (640, 426):
                page.evaluate(f"window.player.nextLevel = window.player.levels.findIndex(l => l.width === {width})")
                page.wait_for_function(f"document.getElementById('v').videoWidth === {width} || window.errors.length > 0", timeout=30_000)
                page.evaluate("window.lat = []")
                page.wait_for_timeout(6_000)
                latency[width] = video_state(page)["lat"]
            state = video_state(page)
            part_target = page.evaluate("window.player.latestLevelDetails.partTarget")
    finally:
        ff.terminate()
        ff.wait(10)
    assert state["errors"] == [] and state["w"] == 426
    assert 0.2 < part_target < 0.25
    for width, samples in latency.items():
        assert len(samples) > 10, (width, samples)
        median = statistics.median(samples)
        print(f"hls.js LL latency at width {width}: median {median:.2f} s, max {max(samples):.2f} s")
        # Measured here: about 1.0 s on the source, 1.3 s on the rung (its transcoder adds ≈ 0.25 s).
        assert 0.2 < median < 3.0, (width, samples)
