"""Soak: N streams with viewers for a long while, as real use goes; what grows, what is lost.

    python benchmarks/soak.py                          # 10 streams x 3 viewers, 60 min; results/soak.{json,md}
    python benchmarks/soak.py --streams 2 --minutes 3

Publishers loop a pre-encoded 720p file with `-c copy` (passthrough ladder, as in ingest.py) and
each reconnects every `--reconnect-min` minutes (killed, back within the grace). Viewers come and
go: each watches 30-120 s (multivariant playlist -> session, then media playlist + newest segment
every 2 s), then a new one joins: every joiner must get the init segment and a segment (a late
joiner that cannot play is counted). RSS of every raylive process and both Redis servers' memory
are sampled every 10 s after a warm-up; growth is last vs first sample (goal < 5 %). At the end
every viewer session must be in ClickHouse (0 analytics events lost) and no dead letters.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import RESULTS, loop_publisher, source_file, start_raylive  # noqa: E402

SEGMENT_URI = re.compile(r"^([^#\s]\S*\.m4s\S*)$", re.M)  # segment lines, not the tags (LL-HLS parts, preload hints)


@dataclass
class Tally:
    sessions: set[str] = field(default_factory=set)  # sids that fetched a media playlist
    joins: int = 0
    join_failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    errors: list[str] = field(default_factory=list)  # fetch failures while watching
    reconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        data: bytes = r.read()
        return data


def _wait_live(playlist_url: str, deadline: float) -> None:
    while True:
        try:
            if SEGMENT_URI.findall(_get(playlist_url).decode()):
                return
        except OSError:
            pass  # 404 until the stream's first part
        if time.monotonic() > deadline:
            raise RuntimeError(f"{playlist_url} listed no segment in time")
        time.sleep(0.5)


def viewers(base: str, stop: threading.Event, tally: Tally, rng: random.Random) -> None:
    """One viewer slot: viewers come (a new session), watch 30-120 s, go, and the next one comes."""
    while not stop.is_set():
        try:
            sid = re.search(r"sid=([\w-]+)", _get(f"{base}/index.m3u8").decode())[1]  # type: ignore[index]
            playlist = _get(f"{base}/source/index.m3u8?sid={sid}").decode()
            init = re.search(r'URI="([^"]+)"', playlist)[1]  # type: ignore[index]
            _get(f"{base}/source/{init}")
            _get(f"{base}/source/{SEGMENT_URI.findall(playlist)[-1]}")
            with tally.lock:
                tally.joins += 1
                tally.sessions.add(sid)
        except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
            with tally.lock:
                at = time.monotonic() - tally.started
                tally.join_failures.append(f"{base.rsplit('/', 1)[1]} at {at:.0f} s: {type(exc).__name__}: {exc}"[:200])
            stop.wait(2.0)
            continue
        leave = time.monotonic() + rng.uniform(30, 120)
        while time.monotonic() < leave and not stop.wait(2.0):
            try:
                playlist = _get(f"{base}/source/index.m3u8?sid={sid}").decode()
                segs = SEGMENT_URI.findall(playlist)
                if segs:
                    _get(f"{base}/source/{segs[-1]}")
            except Exception as exc:  # noqa: BLE001
                with tally.lock:
                    tally.errors.append(type(exc).__name__)


def redis_memory(urls: dict[str, str]) -> dict[str, float]:
    out = {}
    for role, url in urls.items():
        with redis.Redis.from_url(url) as r:
            out[role] = int(r.info("memory")["used_memory"]) / 2**20
    return out


def label(p: psutil.Process) -> str:
    cmd = " ".join(p.cmdline())
    m = re.search(r"ray::(\w+)", cmd)
    if m:
        return m[1]
    for name in ("raylet", "gcs_server", "redis-server", "valkey-server", "haproxy", "raylive.cli"):
        if name in cmd:
            return name
    return p.name()


def sample(root: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in [psutil.Process(root), *psutil.Process(root).children(recursive=True)]:
        try:
            key = f"{label(p)}:{p.pid}"
            out[key] = p.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return out


def _api(base: str, token: str, path: str, body: dict[str, object] | None = None) -> object:
    req = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--viewers", type=int, default=3, help="viewer slots per stream (each a new viewer every 30-120 s)")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--reconnect-min", type=float, default=10, help="each publisher reconnects this often (0: never)")
    ap.add_argument(
        "--warmup-s",
        type=float,
        default=360,
        help="longer than the segment TTL (30 s by default), so Redis and the segment caches are full, and than chdb's one "
        "step of +17 MB (jemalloc's allocated bytes) 2.5-5 min after its first insert, flat for the next 15 min of inserts",
    )
    args = ap.parse_args()
    src = source_file()
    stop = threading.Event()
    tally = Tally()
    rng = random.Random(7)
    samples: list[tuple[float, dict[str, float]]] = []
    redis_samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="raylive-soak-") as tmp:
        server = start_raylive(Path(tmp), args.streams)
        record = json.loads((Path(tmp) / "raylive" / "raylive.json").read_text())
        token = (Path(tmp) / "raylive" / "admin_token").read_text().strip()
        urls = {"state": record["redis_url"], "media": record["media_redis_url"]}
        pubs: list[subprocess.Popen[bytes]] = []
        started = tally.started = time.monotonic()
        try:
            for i in range(args.streams):
                pubs.append(loop_publisher(src, server.publish_url(i)))
            # Viewers come once a stream lists a whole segment: joining a stream that is not live yet
            # is not what this counts (10 publishers at once take ~10-15 s here, #16's burst start).
            for i in range(args.streams):
                _wait_live(server.playlist_url(i), deadline=started + 120)
            for i in range(args.streams):
                base = server.playlist_url(i).rsplit("/source/", 1)[0]
                for _ in range(args.viewers):
                    threading.Thread(target=viewers, args=(base, stop, tally, random.Random(rng.random())), daemon=True).start()
            end = started + args.warmup_s + args.minutes * 60
            next_reconnect = [started + (i + 1) * args.reconnect_min * 60 / args.streams for i in range(args.streams)]
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= started + args.warmup_s:
                    samples.append((time.time(), sample(server.root_pid)))
                    redis_samples.append(redis_memory(urls))
                for i in range(args.streams):
                    if args.reconnect_min and now >= next_reconnect[i]:
                        pubs[i].kill()  # a dropped encoder...
                        pubs[i].wait()
                        time.sleep(2)  # ...back within the reconnect grace
                        pubs[i] = loop_publisher(src, server.publish_url(i))
                        tally.reconnects += 1
                        next_reconnect[i] = now + args.reconnect_min * 60
                    elif pubs[i].poll() is not None:
                        pubs[i] = loop_publisher(src, server.publish_url(i))
                        tally.errors.append(f"publisher {i} exited")
                time.sleep(10)
            alive = sum(1 for p in pubs if p.poll() is None)
            stop.set()
            for p in pubs:
                p.send_signal(signal.SIGINT)
            for p in pubs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            time.sleep(40)  # the last sessions end (30 s window) and their events are written
            status = _api(server.http_base, token, "/api/v1/analytics/status")
            deadline = time.monotonic() + 120
            while isinstance(status, dict) and (status["pending"] or status["lag"]) and time.monotonic() < deadline:
                time.sleep(2)
                status = _api(server.http_base, token, "/api/v1/analytics/status")
            rows = _api(
                server.http_base, token, "/api/v1/analytics/sql",
                {"sql": "SELECT DISTINCT sid FROM viewer_events WHERE event = 'start' AND stream LIKE 'bench%'"},
            )  # fmt: skip
            recorded = {str(r[0]) for r in rows["rows"]} if isinstance(rows, dict) else set()
        finally:
            stop.set()
            for p in pubs:
                if p.poll() is None:
                    p.kill()
            server.stop()
    assert isinstance(status, dict)
    lost = len(tally.sessions - recorded)
    first, mid, last = samples[0][1], samples[len(samples) // 2][1], samples[-1][1]
    procs = []
    for key in sorted(first):
        if key in last and first[key] > 20:  # processes that matter (skip tiny helpers)
            growth = (last[key] - first[key]) / first[key] * 100
            # A cache filling to its bound grows early and then not: the second half tells it from a leak.
            late = (last[key] - mid[key]) / mid[key] * 100 if key in mid else growth
            peak = max(s[1].get(key, 0.0) for s in samples)
            series = [round(s[1].get(key, 0.0), 1) for s in samples[::6]]  # a point a minute
            procs.append({"process": key, "rss_mb_start": round(first[key], 1), "rss_mb_end": round(last[key], 1),
                          "rss_mb_peak": round(peak, 1), "growth_pct": round(growth, 1),
                          "second_half_growth_pct": round(late, 1), "rss_mb_each_minute": series})  # fmt: skip
    total_first, total_last = sum(first.values()), sum(last.values())
    redis_rows = {
        role: {
            "used_mb_start": round(redis_samples[0][role], 1),
            "used_mb_end": round(redis_samples[-1][role], 1),
            "used_mb_peak": round(max(r[role] for r in redis_samples), 1),
        }
        for role in urls
    }
    result = {
        "streams": args.streams,
        "viewer_slots_per_stream": args.viewers,
        "minutes": args.minutes,
        "publishers_alive_at_end": alive,
        "publisher_reconnects": tally.reconnects,
        "viewer_joins": tally.joins,
        "viewer_join_failures": len(tally.join_failures),
        "join_failures": tally.join_failures,
        "viewer_errors": len(tally.errors),
        "viewer_sessions": len(tally.sessions),
        "viewer_sessions_missing_in_clickhouse": lost,
        "analytics_dead_letters": status["dead_letters"]["kept"],
        "total_rss_mb_start": round(total_first, 1),
        "total_rss_mb_end": round(total_last, 1),
        "total_growth_pct": round((total_last - total_first) / total_first * 100, 1),
        "max_process_growth_pct": max((r["growth_pct"] for r in procs), default=0.0),
        "median_process_growth_pct": statistics.median(r["growth_pct"] for r in procs) if procs else 0.0,
        "redis": redis_rows,
        "processes": procs,
        "timeline": [(round(t - samples[0][0], 1), round(sum(s.values()), 1)) for t, s in samples],  # (s, total RSS MB)
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Soak: {args.streams} streams x {args.viewers} viewer slots, {args.minutes} min after {args.warmup_s:.0f} s warm-up; "
        f"publishers alive at end {alive}/{args.streams} after {tally.reconnects} reconnects; {tally.joins} viewers joined, "
        f"{len(tally.join_failures)} could not play, {len(tally.errors)} fetch errors while watching; "
        f"{len(tally.sessions)} sessions, {lost} missing in ClickHouse, {status['dead_letters']['kept']} dead letters",
        "",
        "| process | RSS MB start | end | peak | growth % | of it in the second half % |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['process']} | {r['rss_mb_start']} | {r['rss_mb_end']} | {r['rss_mb_peak']} | {r['growth_pct']} | "
            f"{r['second_half_growth_pct']} |"
            for r in procs
        ),
        f"| all | {result['total_rss_mb_start']} | {result['total_rss_mb_end']} | | {result['total_growth_pct']} | |",
        "",
        "| Redis | used MB start | end | peak |",
        "|---|---|---|---|",
        *(f"| {role} | {r['used_mb_start']} | {r['used_mb_end']} | {r['used_mb_peak']} |" for role, r in redis_rows.items()),
    ]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
