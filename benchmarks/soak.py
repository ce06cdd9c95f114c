"""Soak: N streams with viewers for a while; RSS of every raylive process over time.

    python benchmarks/soak.py                          # 4 streams x 3 viewers, 10 min; results/soak.{json,md}
    python benchmarks/soak.py --streams 2 --minutes 3

Publishers loop a pre-encoded 720p file with `-c copy` (passthrough ladder, as in ingest.py);
viewers fetch the media playlist and its newest segment every 2 s. RSS is sampled every 10 s
after a warm-up; growth is last vs first sample after warm-up, per process (goal < 5 %).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import RESULTS, loop_publisher, source_file, start_raylive  # noqa: E402


def viewer(base: str, stop: threading.Event, errors: list[str]) -> None:
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"{base}/source/index.m3u8", timeout=5) as r:
                playlist = r.read().decode()
            segs = re.findall(r"^(\S+\.m4s)$", playlist, re.M)
            if segs:
                with urllib.request.urlopen(f"{base}/source/{segs[-1]}", timeout=5) as r:
                    r.read()
        except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
            errors.append(type(exc).__name__)
        stop.wait(2.0)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--viewers", type=int, default=3, help="per stream")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument(
        "--warmup-s", type=float, default=150, help="longer than the segment TTL (30 s by default): Redis and the segment caches are full"
    )
    args = ap.parse_args()
    src = source_file()
    stop = threading.Event()
    errors: list[str] = []
    samples: list[tuple[float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="raylive-soak-") as tmp:
        server = start_raylive(Path(tmp), args.streams)
        pubs, viewers = [], []
        try:
            for i in range(args.streams):
                pubs.append(loop_publisher(src, server.publish_url(i)))
            time.sleep(10)
            for i in range(args.streams):
                base = server.playlist_url(i).rsplit("/source/", 1)[0]
                for _ in range(args.viewers):
                    t = threading.Thread(target=viewer, args=(base, stop, errors), daemon=True)
                    t.start()
                    viewers.append(t)
            time.sleep(args.warmup_s)
            end = time.monotonic() + args.minutes * 60
            while time.monotonic() < end:
                samples.append((time.time(), sample(server.root_pid)))
                time.sleep(10)
            alive = sum(1 for p in pubs if p.poll() is None)
        finally:
            stop.set()
            for p in pubs:
                p.send_signal(signal.SIGINT)
            for p in pubs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            server.stop()
    first, last = samples[0][1], samples[-1][1]
    rows = []
    for key in sorted(first):
        if key in last and first[key] > 20:  # processes that matter (skip tiny helpers)
            growth = (last[key] - first[key]) / first[key] * 100
            peak = max(s[1].get(key, 0.0) for s in samples)
            rows.append({"process": key, "rss_mb_start": round(first[key], 1), "rss_mb_end": round(last[key], 1),
                         "rss_mb_peak": round(peak, 1), "growth_pct": round(growth, 1)})  # fmt: skip
    total_first, total_last = sum(first.values()), sum(last.values())
    result = {
        "streams": args.streams,
        "viewers_per_stream": args.viewers,
        "minutes": args.minutes,
        "publishers_alive_at_end": alive,
        "viewer_errors": len(errors),
        "total_rss_mb_start": round(total_first, 1),
        "total_rss_mb_end": round(total_last, 1),
        "total_growth_pct": round((total_last - total_first) / total_first * 100, 1),
        "median_process_growth_pct": statistics.median(r["growth_pct"] for r in rows) if rows else 0.0,
        "processes": rows,
        "timeline": [(round(t - samples[0][0], 1), round(sum(s.values()), 1)) for t, s in samples],  # (s, total RSS MB)
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Soak: {args.streams} streams x {args.viewers} viewers, {args.minutes} min after {args.warmup_s:.0f} s warm-up; "
        f"publishers alive at end {alive}/{args.streams}, viewer errors {len(errors)}",
        "",
        "| process | RSS MB start | end | peak | growth % |",
        "|---|---|---|---|---|",
        *(f"| {r['process']} | {r['rss_mb_start']} | {r['rss_mb_end']} | {r['rss_mb_peak']} | {r['growth_pct']} |" for r in rows),
        f"| all | {result['total_rss_mb_start']} | {result['total_rss_mb_end']} | | {result['total_growth_pct']} |",
    ]
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
