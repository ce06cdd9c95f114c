"""Signed playback: a stream whose every playback URL needs a token. hls.js plays a signed URL
(raylive carries the token into every URI it serves); the same URLs without it, or with an expired
or forged one, are refused with the reason; a key rotation cuts nobody off."""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import urljoin

import jwt
import pytest

from ..conftest import RayliveProcess
from ..helpers import get, publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = pytest.mark.e2e


def _secret(b64: str) -> bytes:
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))


def test_a_signed_stream_plays_with_its_token_only(raylive: RayliveProcess, player_origin: str) -> None:
    created = raylive.api("POST", "/api/v1/streams", json={"name": "signed1", "ladder": ["source"], "playback": "signed"}).json()
    ff = publish(raylive.rtmp_url(created["key"]), seconds=None)
    try:
        master_url = f"{raylive.base_url}/live/signed1/index.m3u8"
        wait_for(lambda: get(master_url).status_code == 401, 30, "signed1 to exist for playback")
        assert get(master_url).json() == {"error": "this stream needs a playback token (?token=)"}
        signed = raylive.api("POST", "/api/v1/streams/signed1/playback-token", json={"ttl_s": 300}).json()
        token = signed["token"]
        master = wait_for(lambda: (r := get(signed["playback_url"])).status_code == 200 and r.text, 30, "signed1 to go live")
        assert isinstance(master, str)
        media_uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
        assert f"token={token}" in media_uri
        media_url = urljoin(master_url, media_uri)
        media = wait_for(lambda: (t := get(media_url).text).count("#EXTINF") >= 1 and t, 30, "a segment")
        assert isinstance(media, str)
        uris = re.findall(r'URI="([^"]+)"', media) + [line for line in media.splitlines() if line and not line.startswith("#")]
        assert uris and all(f"token={token}" in u for u in uris)  # init, parts, hints, segments, reports
        segment = urljoin(media_url, uris[-1] if not uris[-1].endswith(".m3u8") else uris[0])
        assert get(segment).status_code == 200
        bare = segment.split("?")[0]
        assert get(bare).status_code == 401 and get(media_url.split("?")[0]).status_code == 401
        other = raylive.api("POST", "/api/v1/streams", json={"name": "signed2", "playback": "signed"})
        assert other.status_code == 201
        elsewhere = raylive.api("POST", "/api/v1/streams/signed2/playback-token", json={}).json()["token"]
        assert get(f"{bare}?token={elsewhere}").json() == {"error": "the playback token is for another stream"}

        # A rotation: tokens of the key before keep playing for the overlap; the new key signs too.
        rotated = raylive.api("POST", "/api/v1/playback/keys", json={"overlap_s": 600}).json()
        assert get(segment).status_code == 200
        now = int(time.time())
        own = jwt.encode(
            {"sub": "signed1", "exp": now + 60}, _secret(rotated["secret"]), algorithm="HS256", headers={"kid": rotated["kid"]}
        )
        assert get(f"{bare}?token={own}").status_code == 200
        expired = jwt.encode(
            {"sub": "signed1", "exp": now - 60}, _secret(rotated["secret"]), algorithm="HS256", headers={"kid": rotated["kid"]}
        )
        refused = get(f"{bare}?token={expired}")
        assert refused.status_code == 403 and refused.json() == {"error": "the playback token has expired"}

        mpd = get(f"{raylive.base_url}/live/signed1/index.mpd?token={token}").text
        assert re.findall(r'initialization="[^"]+\?token=', mpd) and re.findall(r'media="[^"]+\?token=', mpd)

        # In low-latency mode: blocking reloads and part requests carry the token too.
        with browser_page(page_url(player_origin, "hls", signed["playback_url"], {"lowLatencyMode": True})) as page:
            page.wait_for_function("document.getElementById('v').currentTime > 3 || window.errors.length > 0", timeout=60_000)
            state = video_state(page)
        assert state["errors"] == [] and state["t"] > 3, state
    finally:
        ff.terminate()
        ff.wait(10)
    assert raylive.api("GET", "/api/v1/streams/signed1").json()["playback"] == "signed"
