"""End to end with real processes: `raylive up`, the ffmpeg CLI publishing RTMP, ffprobe reading HLS."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from raylive import store
from raylive.launcher.redis_server import EmbeddedRedis, redis_password
from raylive.runtime.lifecycle import STALE_PUBLISHER_S

from ..conftest import RayliveProcess, start_raylive, stop_raylive
from ..helpers import get, playlist_ready, publish, pyav_publish, wait_for

pytestmark = pytest.mark.e2e

TARGET_S, GOP_S = 2.0, 1.0


def test_publish_and_play_over_hls(raylive: RayliveProcess) -> None:
    key = raylive.create_key("cam1")
    base = f"{raylive.base_url}/live/cam1"
    assert get(f"{base}/index.m3u8").status_code == 404  # not live yet
    ff = publish(raylive.rtmp_url(key), 10)
    try:
        master = wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "the multivariant playlist")
        streams = raylive.cli("streams")
        assert re.search(r"^cam1\tlive\t.*resolution=640x360", streams.stdout, re.M), streams.stdout
        assert ff.wait(30) == 0, ff.stderr.read().decode() if ff.stderr else ""
    finally:
        ff.kill()
    assert isinstance(master, str)
    assert "RESOLUTION=640x360" in master and 'CODECS="avc1.' in master and "mp4a.40.2" in master
    media_url = f"{base}/source/index.m3u8"
    media = wait_for(lambda: t if "#EXT-X-ENDLIST" in (t := get(media_url).text) else None, 15, "EXT-X-ENDLIST")
    assert isinstance(media, str)
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in media and "#EXT-X-PROGRAM-DATE-TIME:" in media
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", media)[1])  # type: ignore[index]
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", media)]
    assert sum(durations) >= 8.0
    assert all(d <= target + GOP_S for d in durations), durations
    audio = get(f"{base}/audio/index.m3u8").text
    assert "#EXT-X-ENDLIST" in audio

    # HTTP semantics a CDN and a web player on another origin rely on.
    r = get(f"{base}/index.m3u8")
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert r.headers["access-control-allow-origin"] == "*"
    init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', media)[1]  # type: ignore[index]
    seg_uri = [line for line in media.splitlines() if line.endswith(".m4s")][0]
    for uri in (init_uri, seg_uri):
        r = get(f"{base}/source/{uri}")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert "immutable" in r.headers["cache-control"] and r.headers["access-control-allow-origin"] == "*"
    assert "max-age=" in get(media_url).headers["cache-control"]
    assert get(f"{base}/source/ffffffff-99.m4s").status_code == 404
    pre = httpx.options(f"{base}/index.m3u8", headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"

    # A real reader: ffprobe through the multivariant playlist sees H.264 and AAC, >= 8 s, monotonic timestamps.
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=index,codec_name,width,height:packet=stream_index,dts_time",
         "-of", "json", f"{base}/index.m3u8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    info = json.loads(probe.stdout)
    codecs = {s["codec_name"] for s in info["streams"]}
    assert {"h264", "aac"} <= codecs
    by_stream: dict[int, list[float]] = {}
    for p in info["packets"]:
        if "dts_time" in p:
            by_stream.setdefault(p["stream_index"], []).append(float(p["dts_time"]))
    for dts in by_stream.values():
        assert all(b > a for a, b in zip(dts, dts[1:], strict=False)), "timestamps must increase"
        assert dts[-1] - dts[0] >= 8.0 - 0.1


def test_wrong_key_second_publisher_and_revoked_key_are_refused(raylive: RayliveProcess) -> None:
    key = raylive.create_key("cam2")
    good = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/cam2/index.m3u8"), 30, "cam2 to go live")
        bad = publish(raylive.rtmp_url("not-a-key"), 3)
        assert bad.wait(30) != 0
        assert b"invalid or revoked stream key" in bad.stderr.read()  # type: ignore[union-attr]
        second = publish(raylive.rtmp_url(key), 3)
        assert second.wait(30) != 0
        assert b"already being published" in second.stderr.read()  # type: ignore[union-attr]
        # The live stream kept flowing through all of that.
        seq = _last_segment(raylive, "cam2")
        wait_for(lambda: _last_segment(raylive, "cam2") > seq, 10, "a new cam2 segment")
        assert good.poll() is None
    finally:
        good.terminate()
        good.wait(10)
    assert raylive.cli("keys", "revoke", "cam2").returncode == 0
    revoked = publish(raylive.rtmp_url(key), 3)
    assert revoked.wait(30) != 0
    listing = raylive.cli("keys", "list").stdout
    assert "cam2\trevoked" in listing and key not in listing


def _last_segment(rl: RayliveProcess, name: str) -> int:
    text = get(f"{rl.base_url}/live/{name}/source/index.m3u8").text
    found = re.findall(r"-(\d+)\.m4s", text)
    return int(found[-1]) if found else -1


def test_invalid_names_and_duplicates_are_clear_errors(raylive: RayliveProcess) -> None:
    bad = raylive.cli("keys", "create", "no spaces/allowed")
    assert bad.returncode == 2 and "stream names are" in bad.stderr
    raylive.create_key("dup")
    again = raylive.cli("keys", "create", "dup")
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.parametrize("ingress", ["haproxy", "serve-proxy"])
def test_sigterm_ends_live_playlists_and_leaves_no_process(tmp_path: Path, ingress: str) -> None:
    # This instance runs as a user's would: Ray's default token authentication on; the HAProxy
    # ingress (the default) or Serve's own proxy.
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "ray_auth_token")  # as on a new machine: no token yet
    if ingress == "serve-proxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "0"
    rl = start_raylive(tmp_path / "data", env=env)
    ff = None
    try:
        key = rl.create_key("live1")
        ff = publish(rl.rtmp_url(key), seconds=None)
        wait_for(playlist_ready(f"{rl.base_url}/live/live1/index.m3u8"), 30, "live1 to go live")
        started = time.monotonic()
        left = stop_raylive(rl, timeout_s=15)
        took = time.monotonic() - started
        assert rl.proc.returncode == 0, rl.log()[-3000:]
        assert took < 15, f"shutdown took {took:.1f}s"
        assert left == [], f"processes left behind: {left}"
        assert ff.wait(15) is not None  # the publisher was disconnected
        assert (tmp_path / "ray_auth_token").exists()  # raylive made the token Ray's auth needed
    finally:
        if ff is not None:
            ff.kill()
        stop_raylive(rl)
    # The state Redis kept its append-only file: the stream's key and its end are there. The media
    # Redis kept nothing on disk (segments are never persisted).
    data = tmp_path / "data"
    assert not (data / "redis").joinpath("raylive.rdb").exists() and any((data / "redis" / "appendonlydir").iterdir())
    assert sorted(p.name for p in (data / "redis-media").iterdir()) == ["redis.log"]
    assert (data / "redis_password").stat().st_mode & 0o777 == 0o600
    assert (data / "redis_password").read_text().strip() not in rl.log()  # the URL printed has no password
    red = EmbeddedRedis(data / "redis", password=redis_password(data))
    red.start()
    try:
        r = redis.Redis.from_url(red.url)
        assert r.hget(store.live_key("live1"), "state") == b"ended"
        assert r.exists(store.stream_key("live1"))
    finally:
        red.stop()


def test_listed_segments_survive_a_playback_replica_restart(raylive: RayliveProcess) -> None:
    key = raylive.create_key("cam3")
    ff = publish(raylive.rtmp_url(key), 5)
    assert ff.wait(30) == 0
    base = f"{raylive.base_url}/live/cam3"
    media = wait_for(lambda: t if "#EXT-X-ENDLIST" in (t := get(f"{base}/source/index.m3u8").text) else None, 15, "cam3 to end")
    assert isinstance(media, str)
    uris = [f"{base}/source/{u}" for u in re.findall(r'URI="([^"]+)"', media) + re.findall(r"^\S+\.m4s$", media, re.M)]
    assert len(uris) >= 3 and all(get(u).status_code == 200 for u in uris)  # now cached in the replica
    ours = psutil.Process(raylive.proc.pid).children(recursive=True)
    replicas = [p for p in ours if "ServeReplica:playback" in " ".join(p.cmdline())]
    assert len(replicas) == 1
    replicas[0].kill()
    replicas[0].wait(10)
    killed = time.monotonic()
    # Serve replaces the replica; meanwhile requests may fail with 5xx, but never 404 a listed segment.
    # (They did when another raylive on the host owned Serve's fixed fallback-proxy port 8500:
    # HAProxy sent our viewers to its proxy while we had no replica. Now each raylive takes its own.)
    not_found: list[str] = []

    def status(url: str) -> int:
        try:
            r = get(url)
        except httpx.HTTPError:
            return 0
        if r.status_code == 404:
            path = url.split("/live/cam3/")[1]
            not_found.append(f"{path} at +{time.monotonic() - killed:.2f}s from node {r.headers.get('X-Served-By')}: {r.text[:60]}")
        return r.status_code

    wait_for(lambda: all(status(u) == 200 for u in uris), 60, "a new replica to serve every listed segment")
    assert not not_found, not_found[:3]


def test_pyav_rtmp_output_publishes(raylive: RayliveProcess) -> None:
    """PyAV's RTMP muxer (what a Python broadcaster uses) publishes a stream that plays."""
    pyav_publish(raylive.rtmp_url(raylive.create_key("pyav1")), "h264", seconds=5, size=(320, 180))
    media_url = f"{raylive.base_url}/live/pyav1/source/index.m3u8"
    media = wait_for(lambda: t if "#EXT-X-ENDLIST" in (t := get(media_url).text) else None, 20, "pyav1 to end")
    assert isinstance(media, str)
    assert sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", media)) >= 4.5
    assert "RESOLUTION=320x180" in get(f"{raylive.base_url}/live/pyav1/index.m3u8").text


def test_unsupported_codec_is_refused_with_a_clear_reason(raylive: RayliveProcess) -> None:
    key = raylive.create_key("sorenson")
    ff = publish(raylive.rtmp_url(key), seconds=10, extra=("-c:v", "flv1"))  # Sorenson H.263, not H.264
    assert ff.wait(30) != 0  # disconnected, not left hanging
    info = wait_for(lambda: (i := raylive.api("GET", "/api/v1/streams/sorenson").json())["state"] == "ended" and i, 10, "the end")
    assert isinstance(info, dict)
    assert info["end_reason"] == "unsupported video codec Sorenson H.263; publish H.264, HEVC or AV1"


def test_ffmpeg_default_flv_audio_mp3_is_served_as_aac(raylive: RayliveProcess) -> None:
    key = raylive.create_key("mp3in")
    ff = publish(raylive.rtmp_url(key), seconds=6, extra=("-c:a", "libmp3lame"))  # what `-f flv` picks by default
    try:
        master = wait_for(playlist_ready(f"{raylive.base_url}/live/mp3in/index.m3u8"), 30, "mp3in to go live")
        assert ff.wait(30) == 0
    finally:
        ff.kill()
    assert isinstance(master, str) and "mp4a.40.2" in master
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=codec_name:packet=pts_time", "-of", "json",
         f"{raylive.base_url}/live/mp3in/audio/index.m3u8"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    info = json.loads(probe.stdout)
    assert info["streams"][0]["codec_name"] == "aac"
    pts = [float(p["pts_time"]) for p in info["packets"]]
    assert pts[-1] - pts[0] >= 4.5


def test_a_silent_half_open_publisher_is_replaced_not_a_lockout(raylive: RayliveProcess) -> None:
    key = raylive.create_key("reconnect")
    base = f"{raylive.base_url}/live/reconnect"
    first = publish(raylive.rtmp_url(key), seconds=None)
    second = None
    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "reconnect to go live")
        epoch = raylive.api("GET", "/api/v1/streams/reconnect").json()["epoch"]
        first.send_signal(signal.SIGSTOP)  # its TCP connection stays open but carries nothing: half-open
        time.sleep(STALE_PUBLISHER_S + 0.5)  # the staleness threshold itself is what is under test
        second = publish(raylive.rtmp_url(key), seconds=None)
        wait_for(lambda: raylive.api("GET", "/api/v1/streams/reconnect").json().get("epoch") != epoch, 15, "the new publisher")
        wait_for(lambda: get(f"{base}/source/index.m3u8").status_code == 200, 15, "the new publisher's segments")
        assert second.poll() is None
    finally:
        first.send_signal(signal.SIGCONT)
        first.kill()
        if second is not None:
            second.kill()


def test_dropped_publisher_reconnects_into_the_same_playlist(raylive: RayliveProcess) -> None:
    key = raylive.create_key("flaky")
    media_url = f"{raylive.base_url}/live/flaky/source/index.m3u8"
    state = lambda: raylive.api("GET", "/api/v1/streams/flaky").json()  # noqa: E731
    first = publish(raylive.rtmp_url(key), seconds=None)
    wait_for(playlist_ready(f"{raylive.base_url}/live/flaky/index.m3u8"), 30, "flaky to go live")
    first.kill()  # the encoder vanishes without unpublishing (network drop, crash)
    first.wait(10)
    wait_for(lambda: state()["state"] == "reconnecting", 10, "the stream to wait for its publisher")
    assert "#EXT-X-ENDLIST" not in get(media_url).text
    second = publish(raylive.rtmp_url(key), seconds=None)  # within the 10 s grace: not "already publishing"
    try:
        after = lambda: "#EXTINF" in get(media_url).text.partition("#EXT-X-DISCONTINUITY")[2]  # noqa: E731
        wait_for(after, 20, "a segment after a discontinuity")
        text = get(media_url).text
        epochs = {line.split("-")[0] for line in text.splitlines() if line.endswith(".m4s")}
        assert len(epochs) == 2 and text.count("#EXT-X-MAP:") == 2 and "#EXT-X-ENDLIST" not in text
        assert state()["state"] == "live"
        second.kill()  # dropped again, and this time it does not come back
        second.wait(10)
        ended = wait_for(lambda: "#EXT-X-ENDLIST" in get(media_url).text, 20, "ENDLIST after the grace period")
        assert ended and state()["end_reason"] == "publisher did not reconnect"
    finally:
        second.kill()


def test_an_ended_streams_actor_exits_and_the_key_publishes_again(raylive: RayliveProcess) -> None:
    """Each ended stream's actor used to stay for good (≈ 85 MB and a GCS entry per stream ever
    published); now it exits ENDED_EXIT_S after the end, and the next publish gets a new one."""
    from raylive.actors.stream import ENDED_EXIT_S

    key = raylive.create_key("brief")
    ff = publish(raylive.rtmp_url(key), 4)
    assert ff.wait(30) == 0
    info = wait_for(lambda: (i := raylive.api("GET", "/api/v1/streams/brief").json())["state"] == "ended" and i, 15, "brief to end")
    assert isinstance(info, dict)
    actor = psutil.Process(int(info["pid"]))
    assert "StreamIngest" in " ".join(actor.cmdline())
    ended = time.monotonic()
    gone = lambda: not actor.is_running() or actor.status() == psutil.STATUS_ZOMBIE  # noqa: E731
    wait_for(gone, ENDED_EXIT_S + 20, "the ended stream's actor to exit")
    print(f"the actor exited {time.monotonic() - ended:.1f}s after the end")
    again = publish(raylive.rtmp_url(key), seconds=None)
    try:
        live = wait_for(lambda: (i := raylive.api("GET", "/api/v1/streams/brief").json())["state"] == "live" and i, 30, "brief live again")
        assert isinstance(live, dict) and int(live["pid"]) != actor.pid
        wait_for(playlist_ready(f"{raylive.base_url}/live/brief/source/index.m3u8"), 30, "brief's new playlist")
    finally:
        again.terminate()
        again.wait(10)
