"""Analytics end to end: a real publish and simulated viewers into `raylive up`, read back from
ClickHouse (embedded chdb) through the control API; the writer killed mid-stream loses nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from raylive import analytics

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e


def watch(base: str, seconds: float, out: list[tuple[str, float, float]]) -> None:
    """A viewer: the multivariant playlist once, then media playlist + newest segment every second."""
    sid = re.search(r"sid=([\w-]+)", get(f"{base}/index.m3u8").text)[1]  # type: ignore[index]
    first = last = 0.0
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            t = time.time()
            playlist = http.get(f"{base}/source/index.m3u8?sid={sid}").text
            # (At the start the playlist may list only parts of its first segment: LL-HLS.)
            for segment in [line for line in playlist.splitlines() if line and not line.startswith("#")][-1:]:
                assert http.get(f"{base}/source/{segment}").status_code == 200
            first, last = first or t, t
            time.sleep(1.0)
    out.append((sid, first, last))


def strangers(base: str, real_sid: str, seconds: float) -> None:
    """Requests that must not make viewers: a stream that does not exist, a rendition that does
    not, and sids nobody was given (made up, or another stream's)."""
    ghost = base.rsplit("/", 1)[0] + "/ghost"
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=10) as http:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            assert http.get(f"{ghost}/source/index.m3u8?sid=madeup{i:04d}abcdefgh").status_code == 404
            assert http.get(f"{ghost}/source/index.m3u8?sid={real_sid}").status_code == 404
            assert http.get(f"{base}/9999p/index.m3u8?sid={real_sid}").status_code == 404
            assert http.get(f"{base}/source/index.m3u8?sid=madeup{i:04d}abcdefgh").status_code == 200  # served, not counted
            time.sleep(0.1)


def sql(rl: RayliveProcess, query: str, **parameters: object) -> list[list[object]]:
    r = rl.api("POST", "/api/v1/analytics/sql", json={"sql": query, "parameters": parameters})
    assert r.status_code == 200, r.text
    return r.json()["rows"]  # type: ignore[no-any-return]


def drained(rl: RayliveProcess) -> bool:
    s = rl.api("GET", "/api/v1/analytics/status").json()
    return bool(s["pending"] == 0 and s["lag"] == 0)


def test_viewers_watch_time_and_ingest_health_reach_the_analytics_api(raylive: RayliveProcess) -> None:
    key = raylive.create_key("an1")
    base = f"{raylive.base_url}/live/an1"
    started = time.time()
    ff = publish(raylive.rtmp_url(key), 14)
    viewers: list[tuple[str, float, float]] = []
    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "an1 to go live")
        # Viewers join a stream that is live, not one still starting (the multivariant playlist is
        # out at the first part, while the stream's actor and encoder still load the 2 cores).
        wait_for(lambda: "#EXTINF" in get(f"{base}/source/index.m3u8").text, 30, "an1's first segment")
        threads = [threading.Thread(target=watch, args=(base, s, viewers)) for s in (9, 6, 3)]
        probe_sid = re.search(r"sid=([\w-]+)", get(f"{base}/index.m3u8").text)[1]  # type: ignore[index]
        threads.append(threading.Thread(target=strangers, args=(base, probe_sid, 8)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert ff.wait(30) == 0
    finally:
        ff.kill()
    assert len(viewers) == 3
    expected_watch = sum(last - first for _, first, last in viewers)
    url = f"/api/v1/streams/an1/analytics?from={started - 5}&to={time.time() + 5}&step=1"

    def report() -> dict[str, object] | None:
        # The last heartbeat of each session comes up to one heartbeat interval after its last request.
        r = raylive.api("GET", url).json()
        ok = r["unique_viewers"] == 3 and abs(r["watch_time_s"] - expected_watch) <= 1.0
        return r if ok else None

    rep = wait_for(
        report,
        30,
        "3 viewers and their watch time in the analytics",
        interval_s=1,
        detail=lambda: (expected_watch, raylive.api("GET", url).json()),
    )
    assert isinstance(rep, dict)
    assert rep["peak_viewers"] == 3  # 80 made-up sids asked for playlists meanwhile
    assert rep["renditions"] == {"source": 1.0}
    others = "SELECT stream, count() FROM viewer_events WHERE stream != 'an1' AND ts > {t:Float64} GROUP BY stream"
    assert sql(raylive, others, t=started) == []
    assert raylive.api("GET", "/api/v1/streams/ghost").status_code == 404
    assert max(p["viewers"] for p in rep["viewers"]) == 3  # type: ignore[attr-defined]
    # Ingest health: one row per second while the publisher streamed, no second twice.
    ingest = rep["ingest"]
    seconds = [p["t"] for p in ingest]  # type: ignore[attr-defined]
    assert seconds == list(range(seconds[0], seconds[-1] + 1)) and len(seconds) >= 12, seconds
    assert all(p["fps"] > 20 for p in ingest[3:-2]), ingest  # type: ignore[index]
    assert sql(raylive, "SELECT ts, count() AS n FROM ingest_health WHERE stream = 'an1' GROUP BY ts HAVING n > 1") == []
    query = "SELECT event, reason, resolution FROM stream_sessions WHERE stream = {s:String} ORDER BY ts"
    # The writer inserts once a second: the end is in within a few.
    sessions = wait_for(lambda: rows if len(rows := sql(raylive, query, s="an1")) >= 2 else None, 10, "the session's end")
    assert sessions == [["start", "", ""], ["end", "unpublished", "640x360"]]
    top = raylive.api("GET", "/api/v1/analytics/top?period=1h").json()
    assert "an1" in [t["stream"] for t in top]


def test_sql_endpoint_is_read_only(raylive: RayliveProcess) -> None:
    assert sql(raylive, "SELECT 1 + {x:UInt8}", x=1) == [[2]]
    hostname = Path("/etc/hostname").read_text().strip()
    for bad in (
        "DROP TABLE viewer_events",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT file/**/('/etc/hostname')",
        "SELECT `file`('/etc/hostname')",
        "SELECT 1 INTO/**/OUTFILE '/tmp/raylive-e2e-escape'",
        "SELECT nope FROM nowhere",
    ):
        r = raylive.api("POST", "/api/v1/analytics/sql", json={"sql": bad})
        assert r.status_code == 422 and r.json()["error"].startswith("query refused"), r.text
        assert hostname not in r.text
    assert not Path("/tmp/raylive-e2e-escape").exists()
    assert raylive.api("POST", "/api/v1/analytics/sql", json={"sql": "SELECT 1"}, token="wrong").status_code == 401


def test_killed_writer_resumes_without_loss_or_double_count(raylive: RayliveProcess) -> None:
    redis_url = json.loads((raylive.data_dir / "raylive.json").read_text())["redis_url"]
    r = redis.Redis.from_url(redis_url)
    total, stop = 6000, threading.Event()

    def produce() -> None:  # what the playback replicas do, faster
        for i in range(total):
            if i % 200 == 0:
                time.sleep(0.05)
            analytics.emit(r, "viewer", stream="synthetic", sid=f"v{i}", event="heartbeat", rendition="source", bytes=1)
        stop.set()

    pid = raylive.api("GET", "/api/v1/analytics/status").json()["pid"]
    producer = threading.Thread(target=produce)
    producer.start()
    wait_for(lambda: sql(raylive, "SELECT count() FROM viewer_events WHERE stream = 'synthetic'")[0][0] > 0, 30, "the first inserts")
    os.kill(pid, signal.SIGKILL)  # mid-stream: events keep arriving in the Redis buffer meanwhile
    producer.join(60)
    assert stop.is_set()

    def restarted_and_drained() -> bool:
        try:
            status = raylive.api("GET", "/api/v1/analytics/status")
        except httpx.HTTPError:
            return False
        return status.status_code == 200 and status.json()["pid"] != pid and drained(raylive)

    wait_for(restarted_and_drained, 90, "the writer to restart and drain the buffer")
    count, ids = sql(raylive, "SELECT count(), uniqExact(event_id) FROM viewer_events WHERE stream = 'synthetic'")[0]
    assert count == ids == total
