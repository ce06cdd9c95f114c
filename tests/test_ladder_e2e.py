"""The ABR ladder end to end: a real 720p ffmpeg publish into `raylive up`, every rendition read
back by ffprobe from the Serve URLs, rungs produced by the per-stream transcoder actor."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from .conftest import RayliveProcess
from .helpers import get, publish, wait_for

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
        info = raylive.api("GET", "/api/v1/streams/ladder720").json()
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
