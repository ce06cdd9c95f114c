"""Recordings end to end: a stream recorded through a publisher's reconnect becomes one recording
that plays whole in ffprobe and in hls.js (the console's player; one discontinuity), is listed by
the API, gives clips (MP4s that Chromium plays) and can be deleted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest
from mpegdash.parser import MPEGDASHParser

from raylive import store

from ..conftest import RayliveProcess
from ..helpers import playlist_ready, publish, wait_for
from .browser import browser_page, chromium, console_page, page_url, until, video_state

pytestmark = pytest.mark.e2e


def test_a_recorded_publish_with_a_reconnect_plays_back_whole(raylive: RayliveProcess, player_origin: str) -> None:
    name = "rec1"
    key = raylive.api("POST", "/api/v1/streams", json={"name": name, "ladder": ["source"]}).json()["key"]
    assert raylive.api("PUT", f"/api/v1/streams/{name}/recording", json={"recording": {"enabled": True}}).json()["recording"]["enabled"]
    state = lambda: raylive.api("GET", f"/api/v1/streams/{name}").json()  # noqa: E731
    first = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/{name}/index.m3u8"), 30, f"{name} live")
        started = time.monotonic()
        time.sleep(14)  # 30 s published in all, the reconnect in the middle
        first.kill()  # dropped without unpublishing: the stream waits for it (reconnect grace)
        first.wait(10)
        wait_for(lambda: state()["state"] == "reconnecting", 10, "the stream to wait for its publisher")
        during = raylive.api("GET", f"/api/v1/streams/{name}/recordings").json()
        assert [r["state"] for r in during] == ["recording"], during
        second = publish(raylive.rtmp_url(key), seconds=15)  # back within the grace, then unpublishes cleanly
        assert second.wait(30) == 0, second.stderr.read() if second.stderr else ""
        published_s = time.monotonic() - started
    finally:
        first.kill()
    wait_for(
        lambda: raylive.api("GET", f"/api/v1/streams/{name}/recordings").json()[0]["state"] == "complete", 30, "the recording complete"
    )
    [rec] = raylive.api("GET", f"/api/v1/streams/{name}/recordings").json()
    assert rec["discontinuities"] == 1 and rec["renditions"] == ["audio", "source"]
    # Everything published but the gap of the reconnect, within a GOP (1 s) at each end.
    assert 27 <= rec["duration_s"] <= published_s, (rec, published_s)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type", "-of", "json", rec["playback_url"]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    info = json.loads(probe.stdout)
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert abs(float(info["format"]["duration"]) - rec["duration_s"]) <= 1.0, (info["format"], rec)
    vod = raylive.api("GET", f"/live/{name}/recordings/{rec['id']}/source/index.m3u8").text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in vod and vod.count("#EXT-X-DISCONTINUITY\n") == 1 and vod.endswith("#EXT-X-ENDLIST\n")

    # hls.js (the console's player) plays it from start to end, through the reconnect.
    with chromium() as browser:
        page = console_page(browser, raylive, raylive.token)
        page.goto(f"{raylive.base_url}/console/#/stream/{name}")
        until(page, "!!document.querySelector('tbody button')", 15, "the recording listed in the console")
        page.click("button:text-is('Play')")
        until(page, "document.getElementById('player').currentTime > 0.5", 30, "the recording to play")
        page.evaluate("document.getElementById('player').playbackRate = 4")
        until(page, "document.getElementById('player').ended", 30, "the recording to play to its end")
        assert "Player:" not in page.inner_text("main") and page.errors == []
        assert abs(page.evaluate("document.getElementById('player').duration") - rec["duration_s"]) <= 1.0
        page.click("button:text-is('Clip')")  # and a clip made from the page is listed with its MP4
        page.fill("dialog label:has-text('From') input", "1")
        page.fill("dialog label:has-text('To') input", "3")
        page.click("#dialog-ok")
        page.wait_for_selector("a:has-text('MP4')")

    # Its static MPD: a Period each side of the reconnect; dash.js plays it to the end.
    mpd_url = f"{raylive.base_url}/live/{name}/recordings/{rec['id']}/index.mpd"
    mpd = MPEGDASHParser.parse(httpx.get(mpd_url).text)
    assert mpd.type == "static" and len(mpd.periods) == 2
    with browser_page(page_url(player_origin, "dash", mpd_url)) as page:
        page.wait_for_function("document.getElementById('v').currentTime > 0.5 || window.errors.length > 0", timeout=30_000)
        page.evaluate("document.getElementById('v').playbackRate = 4")
        page.wait_for_function("document.getElementById('v').ended || window.errors.length > 0", timeout=30_000)
        assert video_state(page)["errors"] == []

    # A frame of it at a given time (decoded once, then cached), and none beyond its end.
    thumb = raylive.api("GET", f"/live/{name}/recordings/{rec['id']}/thumbnail.jpg?t=3")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8", thumb.text[:200]
    assert raylive.api("GET", f"/live/{name}/recordings/{rec['id']}/thumbnail.jpg?t=999").status_code == 404

    # A clip: one faststart MP4 within a GOP of the span asked, from offsets or from wall-clock times.
    made = raylive.api("POST", f"/api/v1/streams/{name}/clips", json={"recording": rec["id"], "from": 1.5, "to": 5.5})
    assert made.status_code == 201, made.text
    clip = made.json()
    assert abs(clip["duration_s"] - 4.0) <= 1.0, clip
    mp4 = httpx.get(clip["url"], timeout=30).content
    assert len(mp4) == clip["bytes"] and 0 < mp4.find(b"moov") < mp4.find(b"mdat")
    ranged = httpx.get(clip["url"], headers={"Range": "bytes=100-199"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == mp4[100:200]
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", clip["url"]], capture_output=True, text=True
    )
    assert abs(float(json.loads(probe.stdout)["format"]["duration"]) - 4.0) <= 1.0, probe.stdout
    by_time = raylive.api("POST", f"/api/v1/streams/{name}/clips", json={"from": clip["starts_at"], "to": clip["starts_at"] + 3})
    assert by_time.status_code == 201 and abs(by_time.json()["duration_s"] - 3.0) <= 1.0, by_time.text
    # Across the reconnect: both sides joined end to end (the gap left out, as in the recording's playlist).
    across = raylive.api("POST", f"/api/v1/streams/{name}/clips", json={"recording": rec["id"], "from": 2, "to": rec["duration_s"] - 1})
    assert across.status_code == 201 and abs(across.json()["duration_s"] - (rec["duration_s"] - 3)) <= 1.0, (across.text, rec)
    with chromium() as browser:  # Chromium's own <video> plays it to the end, through the join
        page = browser.new_page()
        page.set_content(f'<video id="v" src="{across.json()["url"]}" muted autoplay></video>')
        until(page, "document.getElementById('v').currentTime > 0.2", 30, "the clip to play")
        page.evaluate("document.getElementById('v').playbackRate = 4")
        until(page, "document.getElementById('v').ended", 30, "the clip to play to its end")
    assert [c["id"] for c in raylive.api("GET", f"/api/v1/streams/{name}/clips").json()][1:] == [
        clip["id"],
        by_time.json()["id"],
        across.json()["id"],
    ]
    assert raylive.api("DELETE", f"/api/v1/streams/{name}/clips/{clip['id']}").status_code == 204

    assert raylive.api("DELETE", f"/api/v1/streams/{name}/recordings/{rec['id']}").status_code == 204
    assert raylive.api("GET", f"/api/v1/streams/{name}/recordings").json() == []
    assert raylive.api("GET", f"/api/v1/streams/{name}/recordings/..%2f..%2fadmin_token").status_code == 404


def publish_recorded(raylive: RayliveProcess, name: str) -> subprocess.Popen[bytes]:
    """A new stream, recorded, live with an ffmpeg publisher."""
    key = raylive.api("POST", "/api/v1/streams", json={"name": name, "ladder": ["source"]}).json()["key"]
    raylive.api("PUT", f"/api/v1/streams/{name}/recording", json={"recording": {"enabled": True}})
    ff = publish(raylive.rtmp_url(key), seconds=None)
    wait_for(playlist_ready(f"{raylive.base_url}/live/{name}/index.m3u8"), 30, f"{name} live")
    return ff


def test_a_stream_actor_killed_mid_recording_loses_at_most_what_was_in_flight(raylive: RayliveProcess) -> None:
    name = "rec2"
    ff = publish_recorded(raylive, name)
    try:
        started = time.monotonic()
        time.sleep(6)
        pid = raylive.api("GET", f"/api/v1/streams/{name}").json()["pid"]
        os.kill(pid, signal.SIGKILL)  # Ray restarts the actor; the gateway gives it the publisher back
        wait_for(lambda: raylive.api("GET", f"/api/v1/streams/{name}").json().get("pid") not in (None, pid), 30, "the restarted actor")
        time.sleep(6)
        ff.terminate()  # a clean end
        ff.wait(15)
        published_s = time.monotonic() - started
    finally:
        ff.kill()
    listed = lambda: raylive.api("GET", f"/api/v1/streams/{name}/recordings").json()  # noqa: E731
    wait_for(lambda: listed() and listed()[0]["state"] == "complete", 30, "the recording complete")
    [rec] = listed()
    # One recording through the restart; what it lists is stored (every file it names is there),
    # and it misses at most the segment in flight and the restart's own gap.
    assert rec["duration_s"] >= published_s - 6, (rec, published_s)
    for rendition in rec["renditions"]:
        playlist = raylive.api("GET", f"/live/{name}/recordings/{rec['id']}/{rendition}/index.m3u8").text
        uris = [
            line.split('"')[1] if line.startswith("#EXT-X-MAP") else line
            for line in playlist.splitlines()
            if line.startswith("#EXT-X-MAP") or line.endswith(".m4s")
        ]
        for uri in uris:
            assert raylive.api("GET", f"/live/{name}/recordings/{rec['id']}/{rendition}/{uri}").status_code == 200, (rendition, uri)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", rec["playback_url"]], capture_output=True, text=True
    )
    assert abs(float(json.loads(probe.stdout)["format"]["duration"]) - rec["duration_s"]) <= 1.0, probe.stdout


def test_a_viewer_seeks_back_in_the_dvr_window_while_the_live_edge_stays_low_latency(raylive: RayliveProcess, player_origin: str) -> None:
    name = "dvr1"
    key = raylive.api("POST", "/api/v1/streams", json={"name": name, "ladder": ["source"]}).json()["key"]
    raylive.api("PUT", f"/api/v1/streams/{name}/recording", json={"recording": {"enabled": True}})
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/{name}/index.m3u8"), 30, f"{name} live")
        time.sleep(6)
        ff.kill()  # the publisher drops and is back within the grace: the DVR reaches back through the reconnect
        ff.wait(10)
        wait_for(lambda: raylive.api("GET", f"/api/v1/streams/{name}").json()["state"] == "reconnecting", 10, "the stream to wait for it")
        ff = publish(raylive.rtmp_url(key), seconds=None)
        live_url, dvr_url = (f"{raylive.base_url}/live/{name}/source/{f}.m3u8" for f in ("index", "dvr"))
        # The live window is 6 segments; once the reconnect slid out of it, the DVR playlist has them all.
        wait_for(
            lambda: "#EXT-X-DISCONTINUITY-SEQUENCE:1" in httpx.get(live_url).text,
            60,
            "the live window to slide past the reconnect",
            detail=lambda: httpx.get(live_url).text,
        )
        live, dvr = httpx.get(live_url).text, httpx.get(dvr_url).text
        assert "#EXT-X-MEDIA-SEQUENCE:0" in dvr and dvr.count("#EXTINF") > live.count("#EXTINF") + 2, dvr
        assert dvr.count("#EXT-X-DISCONTINUITY\n") == 1 and "DISCONTINUITY-SEQUENCE" not in dvr, dvr
        # Its live end is the live playlist's: parts, the preload hint, reports of the other DVR playlists.
        assert "#EXT-X-PART:" in dvr and "PRELOAD-HINT" in dvr and "CAN-SKIP-UNTIL" not in dvr
        assert 'REPORT:URI="../audio/dvr.m3u8"' in dvr
        master = httpx.get(f"{raylive.base_url}/live/{name}/dvr.m3u8").text
        assert "source/dvr.m3u8?" in master and "audio/dvr.m3u8?" in master and "index.m3u8" not in master
        # Its oldest segment, once the media Redis no longer holds it, comes from the recording (it
        # was a 404 from a replica that had not kept it).
        first = next(line for line in dvr.splitlines() if line and not line.startswith("#"))
        media = raylive.media_redis()
        wait_for(lambda: not media.exists(store.file_key(name, f"source/{first}")), 60, f"{first} to leave the media Redis")
        oldest_segment = httpx.get(f"{raylive.base_url}/live/{name}/source/{first}")
        assert oldest_segment.status_code == 200 and b"moof" in oldest_segment.content, oldest_segment.text[:200]
        before_reconnect = sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", dvr.split("#EXT-X-DISCONTINUITY\n")[0]))
        # hls.js starts at the live edge, then seeks to the oldest second of the window and plays from
        # there through the reconnect.
        with browser_page(page_url(player_origin, "hls", f"{raylive.base_url}/live/{name}/dvr.m3u8", {"lowLatencyMode": True})) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 1 || window.errors.length > 0", timeout=30_000)
            edge = page.evaluate("document.getElementById('v').currentTime")
            oldest = page.evaluate("document.getElementById('v').seekable.start(0)")
            assert edge - oldest > 12, (edge, oldest)  # more than the live window behind
            page.evaluate(f"document.getElementById('v').currentTime = {oldest + 1}")
            through = oldest + before_reconnect + 2
            wait_for(
                lambda: page.evaluate(f"document.getElementById('v').currentTime > {through} || window.errors.length > 0"),
                30,
                "hls.js to play from the oldest second through the reconnect",
                detail=lambda: video_state(page),
            )
            state = video_state(page)
            assert state["errors"] == [] and state["t"] < edge - 5, state
        # The same for DASH: the live MPD with the recording's segments and the period before the reconnect.
        live_mpd = MPEGDASHParser.parse(httpx.get(f"{raylive.base_url}/live/{name}/index.mpd").text)
        dvr_mpd = MPEGDASHParser.parse(httpx.get(f"{raylive.base_url}/live/{name}/dvr.mpd").text)
        template = lambda period: period.adaptation_sets[0].representations[0].segment_templates[0]  # noqa: E731
        assert len(dvr_mpd.periods) == 2 and [p.id for p in live_mpd.periods] == [dvr_mpd.periods[1].id]
        assert [template(p).start_number for p in dvr_mpd.periods] == [0, 0] and template(live_mpd.periods[0]).start_number > 0
        with browser_page(page_url(player_origin, "dash", f"{raylive.base_url}/live/{name}/dvr.mpd")) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 1 || window.errors.length > 0", timeout=30_000)
            edge = page.evaluate("document.getElementById('v').currentTime")
            oldest = page.evaluate("window.player.getDvrWindow().start")
            assert edge - oldest > 12, (edge, oldest)
            page.evaluate(f"window.player.seek({oldest + 1})")
            through = oldest + before_reconnect + 2
            wait_for(
                lambda: page.evaluate(
                    f"(document.getElementById('v').currentTime > {through} && document.getElementById('v').currentTime < {edge - 5})"
                    " || window.errors.length > 0"
                ),
                30,
                f"dash.js to play from {oldest + 1:.1f} s through the reconnect to {through:.1f} s",
                detail=lambda: video_state(page),
            )
            assert video_state(page)["errors"] == []
    finally:
        ff.kill()
