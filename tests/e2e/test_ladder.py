"""The ABR ladder end to end: a real 720p ffmpeg publish into `raylive up`, every rendition read
back by ffprobe from the Serve URLs, rungs produced by the per-stream transcoder actor."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from ..conftest import RayliveProcess
from ..helpers import get, publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = pytest.mark.e2e


def probe(url: str) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,profile:packet=dts_time",
         "-select_streams", "v:0", "-of", "json", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_720p_publish_is_served_as_an_aligned_abr_ladder(raylive: RayliveProcess) -> None:
    created = raylive.api("POST", "/api/v1/streams", json={"name": "ladder720", "ladder": ["source", "720p", "480p", "360p"]})
    assert created.status_code == 201, created.text
    base = f"{raylive.base_url}/live/ladder720"
    ff = publish(raylive.rtmp_url(created.json()["key"]), 12, size="1280x720")
    try:

        def three_variants() -> str | None:
            r = get(f"{base}/index.m3u8")
            return r.text if r.status_code == 200 and r.text.count("#EXT-X-STREAM-INF") == 3 else None

        master = wait_for(three_variants, 60, "a master playlist with 3 variants", detail=lambda: get(f"{base}/index.m3u8").text)
        assert isinstance(master, str)
        # The live status is written once a second: the ladder's shows within one.
        info = wait_for(
            lambda: (i := raylive.api("GET", "/api/v1/streams/ladder720").json()).get("encoder") and i, 3, "the ladder in the status"
        )
        assert info["encoder"] == "libx264" and set(info["transcode_realtime_factor"]) == {"480p", "360p"}, info
        assert ff.wait(60) == 0, ff.stderr.read().decode() if ff.stderr else ""
    finally:
        ff.kill()
    variants = [(a, uri.split("?")[0]) for a, uri in re.findall(r"#EXT-X-STREAM-INF:(.*)\n(\S+)", master)]
    assert [uri for _, uri in variants] == ["source/index.m3u8", "480p/index.m3u8", "360p/index.m3u8"]
    playlists = {}
    for attrs, uri in variants:
        rendition = uri.split("/")[0]
        playlists[rendition] = wait_for(
            lambda u=uri: t if "#EXT-X-ENDLIST" in (t := get(f"{base}/{u}").text) else None, 30, f"{uri} to end"
        )
        width, height = map(int, re.search(r"RESOLUTION=(\d+)x(\d+)", attrs).groups())  # type: ignore[union-attr]
        codecs = re.search(r'CODECS="([^"]+)"', attrs)[1]  # type: ignore[index]
        assert codecs.startswith("avc1.") and codecs.endswith(",mp4a.40.2")
        assert int(re.search(r"AVERAGE-BANDWIDTH=(\d+)", attrs)[1]) <= int(re.search(r"BANDWIDTH=(\d+)", attrs)[1])  # type: ignore[index]
        assert "FRAME-RATE=30.000" in attrs
        # The rendition as a player reads it, through the Serve endpoint.
        result = probe(f"{base}/{uri}")
        stream = result["streams"][0]  # type: ignore[index]
        assert (stream["width"], stream["height"]) == (width, height), (uri, stream)
        dts = [float(p["dts_time"]) for p in result["packets"] if "dts_time" in p]  # type: ignore[attr-defined]
        assert all(b > a for a, b in zip(dts, dts[1:], strict=False)) and dts[-1] - dts[0] >= 10, uri
    assert {r: re.search(r"RESOLUTION=(\S+?),", a)[1] for a, r in ((a, u.split("/")[0]) for a, u in variants)} == {  # type: ignore[index]
        "source": "1280x720",
        "480p": "854x480",
        "360p": "640x360",
    }

    # Aligned renditions: the same segments (epoch and number) with the same durations.
    def listing(text: str) -> list[tuple[str, str]]:
        return re.findall(r"#EXTINF:([\d.]+),\n(\S+\.m4s)", text)

    source = listing(playlists["source"])
    for rendition in ("480p", "360p"):
        rung = listing(playlists[rendition])
        assert [seg for _, seg in rung] == [seg for _, seg in source]
        assert all(abs(float(a) - float(b)) <= 1 / 30 + 0.001 for (a, _), (b, _) in zip(rung, source, strict=True)), (rung, source)


def test_a_killed_transcoder_is_replaced_and_its_rungs_continue(raylive: RayliveProcess) -> None:
    """SIGKILL of the transcoder's process: a new one takes over at the next keyframe, the rung's
    playlist continues after an EXT-X-DISCONTINUITY, the MPD in a Period of its own, the source and
    the master are untouched."""
    created = raylive.api("POST", "/api/v1/streams", json={"name": "txkill", "ladder": ["source", "240p"]})
    assert created.status_code == 201, created.text
    base = f"{raylive.base_url}/live/txkill"
    ff = publish(raylive.rtmp_url(created.json()["key"]), seconds=None)
    try:
        wait_for(lambda: get(f"{base}/240p/index.m3u8").text.count("#EXTINF") >= 2, 60, "two 240p segments")
        info = raylive.api("GET", "/api/v1/streams/txkill").json()

        # Killed with a segment being written: the parts viewers may already hold.
        def writing() -> list[str]:
            return re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', get(f"{base}/240p/index.m3u8").text.rsplit("#EXTINF", 1)[-1])

        open_parts: list[str] = wait_for(writing, 10, "a 240p part")  # type: ignore[assignment]
        before = re.findall(r"^\S+\.m4s$", get(f"{base}/240p/index.m3u8").text, re.M)
        part_bytes = b"".join(get(f"{base}/240p/{uri}").content for uri in open_parts)
        os.kill(info["transcoder_pid"], signal.SIGKILL)
        killed = time.monotonic()
        masters: set[int] = set()

        def rung_continues() -> bool:
            masters.add(get(f"{base}/index.m3u8").status_code)
            text = get(f"{base}/240p/index.m3u8").text
            return "#EXT-X-DISCONTINUITY" in text and bool(re.search(r"#EXT-X-DISCONTINUITY\n(?:#.*\n)*#EXTINF:[\d.]+,\n\S+\.m4s", text))

        rung = f"{base}/240p/index.m3u8"
        wait_for(rung_continues, 30, "the 240p playlist to continue after a discontinuity", detail=lambda: get(rung).text)
        print(f"transcoder killed -> next 240p segment listed in {time.monotonic() - killed:.1f}s")
        status = lambda: raylive.api("GET", "/api/v1/streams/txkill").json()  # noqa: E731
        # (the stream's status is written once a second: it may lag the playlist)
        after = wait_for(lambda: s if (s := status())["transcoder_restarts"] else None, 5, "the restart in the status", detail=status)
        assert after["transcoder_restarts"] == 1 and after["transcoder_pid"] != info["transcoder_pid"], after
        assert masters == {200} and "240p/index.m3u8" in get(f"{base}/index.m3u8").text
        assert "#EXT-X-DISCONTINUITY" not in get(f"{base}/source/index.m3u8").text  # the source went on
        assert all(get(f"{base}/240p/{seg}").status_code == 200 for seg in before)
        # That segment stays listed, joined from those parts, before the discontinuity.
        joined = open_parts[0].rsplit(".", 2)[0] + ".m4s"
        text = get(f"{base}/240p/index.m3u8").text
        assert re.search(rf"^{re.escape(joined)}\n(?:#.*\n)*?#EXT-X-DISCONTINUITY", text, re.M), (joined, text)
        assert get(f"{base}/240p/{joined}").content.startswith(part_bytes), joined
        # DASH: the new transcoder's segments (their own init and names) are a Period of their own,
        # from the first source segment start after the restart; every file named there is served.
        new_epoch = re.findall(r'#EXT-X-MAP:URI="init-([0-9a-f]+)\.mp4"', text)[-1]
        mpd = wait_for(lambda: m if (m := get(f"{base}/index.mpd").text).count("<Period ") == 2 else None, 15, "a second Period")
        assert isinstance(mpd, str)
        second = mpd.split("<Period ")[2]
        assert f'initialization="240p/init-{new_epoch}.mp4"' in second and f'media="240p/{new_epoch}-$Number$.m4s"' in second
        start = int(re.search(r'media="240p/[^"]+"\s+startNumber="(\d+)"', second)[1])  # type: ignore[index]
        assert get(f"{base}/240p/init-{new_epoch}.mp4").status_code == 200
        assert get(f"{base}/240p/{new_epoch}-{start}.m4s").status_code == 200
        assert ff.poll() is None
    finally:
        ff.kill()


def test_dash_js_plays_a_rung_across_a_transcoder_restart(raylive: RayliveProcess, player_origin: str) -> None:
    """dash.js held to the 240p rung (no ABR switching) while its transcoder is killed: it crosses
    into the Period the new transcoder's segments begin and plays on, without an error."""
    created = raylive.api("POST", "/api/v1/streams", json={"name": "txdash", "ladder": ["source", "240p"]})
    assert created.status_code == 201, created.text
    base = f"{raylive.base_url}/live/txdash"
    ff = publish(raylive.rtmp_url(created.json()["key"]), seconds=None)
    cfg = {"streaming": {"abr": {"autoSwitchBitrate": {"video": False}, "initialBitrate": {"video": 100}}}}
    try:
        wait_for(lambda: get(f"{base}/index.mpd").text.count('id="240p"') == 1, 60, "the 240p rung in the MPD")
        with browser_page(page_url(player_origin, "dash", f"{base}/index.mpd", cfg)) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 2 || window.errors.length > 0", timeout=30_000)
            os.kill(raylive.api("GET", "/api/v1/streams/txdash").json()["transcoder_pid"], signal.SIGKILL)
            wait_for(lambda: get(f"{base}/index.mpd").text.count("<Period ") == 2, 30, "the new transcoder's Period")
            crossed = video_state(page)["t"]
            page.wait_for_function(f"document.getElementById('v').currentTime > {crossed + 6} || window.errors.length > 0", timeout=30_000)
            state = video_state(page)
        assert ff.poll() is None
    finally:
        ff.kill()
    assert state["errors"] == [] and state["t"] > crossed + 6, state
    assert state["h"] == 240, state  # the rung, after the Period change
