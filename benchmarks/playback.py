"""Playback benchmark: requests/s and latency of a live media playlist and a 2 s segment.

Measured with wrk through raylive's Serve endpoint (Serve's own proxy, and Ray's HAProxy ingress,
raylive's default), side by side in the same run with nginx serving the very same bytes as static
files.

    python benchmarks/playback.py                  # writes benchmarks/results/playback.{json,md}
    python benchmarks/playback.py --duration 5 --connections 32

Needs ffmpeg, wrk and nginx (Debian); HAProxy comes with ray[serve] on Linux.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import RESULTS, http_get, source_file, start_raylive, stop_process  # noqa: E402
from raylive.launcher.redis_server import free_port  # noqa: E402
from raylive.launcher.up import haproxy_available  # noqa: E402

NGINX_STATIC = """
daemon off;
master_process on;
worker_processes 1;
{user}
error_log {work}/nginx-error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {work}/www; }}
  }}
}}
"""


def wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    proc = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", url], capture_output=True, text=True, timeout=seconds + 60
    )
    out = proc.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk failed on {url}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    rps = float(found[1])

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return -1.0
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m[2]]
        return round(float(m[1]) * scale, 2)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": round(rps, 1), "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": int(errors[1]) if errors else 0}


def measure_raylive(mode: str, env: dict[str, str], work: Path, args: argparse.Namespace) -> tuple[dict[str, object], bytes, bytes]:
    server = start_raylive(work, 1, env)
    pub = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(source_file()), "-c", "copy",
         "-f", "flv", server.publish_url(0)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        playlist_url = server.playlist_url(0)
        deadline = time.monotonic() + 60
        while True:
            status, text = http_get(playlist_url)
            segs = [line for line in text.splitlines() if line.endswith(".m4s")]
            if status == 200 and len(segs) >= 2:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("raylive stream did not become playable")
            time.sleep(0.2)
        segment_url = playlist_url.rsplit("/", 1)[0] + "/" + segs[0]
        with urllib_open(segment_url) as r:
            segment = r.read()
        row = {
            "mode": mode,
            "playlist": wrk(playlist_url, args.duration, args.connections),
            "segment": wrk(segment_url, args.duration, args.connections),
            "segment_bytes": len(segment),
        }
        return row, text.encode(), segment
    finally:
        pub.terminate()
        pub.wait(10)
        server.stop()


def urllib_open(url: str):  # type: ignore[no-untyped-def]
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def measure_nginx(playlist: bytes, segment: bytes, work: Path, args: argparse.Namespace) -> dict[str, object]:
    www = work / "www"
    www.mkdir(parents=True)
    (www / "index.m3u8").write_bytes(playlist)
    (www / "seg.m4s").write_bytes(segment)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(NGINX_STATIC.format(work=work, port=port, user=user))
    proc = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while http_get(f"http://127.0.0.1:{port}/index.m3u8")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        return {
            "mode": "nginx static",
            "playlist": wrk(f"http://127.0.0.1:{port}/index.m3u8", args.duration, args.connections),
            "segment": wrk(f"http://127.0.0.1:{port}/seg.m4s", args.duration, args.connections),
            "segment_bytes": len(segment),
        }
    finally:
        stop_process(proc, signal.SIGQUIT, 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "ffmpeg"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (apt-get install {tool})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="raylive-playback-") as tmp:
        modes = [("serve proxy", {"RAY_SERVE_ENABLE_HA_PROXY": "0"})]
        if haproxy_available():
            modes.append(("haproxy ingress (default)", {}))
        playlist = segment = b""
        for i, (mode, env) in enumerate(modes):
            work = Path(tmp) / f"raylive{i}"
            work.mkdir()
            row, playlist, segment = measure_raylive(mode, env, work, args)
            rows.append(row)
            print(row, flush=True)
        rows.append(measure_nginx(playlist, segment, Path(tmp) / "nginx", args))
        print(rows[-1], flush=True)
    result = {"connections": args.connections, "duration_s": args.duration, "cores": os.cpu_count(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "playback.json").write_text(json.dumps(result, indent=2))
    ref = rows[-1]
    lines = [
        f"Playback through wrk, {args.connections} connections, {args.duration:.0f} s each, {os.cpu_count()} cores; "
        f"segment {ref['segment_bytes']} bytes.",
        "",
        "| mode | playlist req/s | p50 ms | p99 ms | segment req/s | p50 ms | p99 ms | segment vs nginx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pl, sg = r["playlist"], r["segment"]  # type: ignore[index]
        ratio = sg["rps"] / ref["segment"]["rps"] if ref["segment"]["rps"] else 0  # type: ignore[index]
        cells = [r["mode"], pl["rps"], pl["p50_ms"], pl["p99_ms"], sg["rps"], sg["p50_ms"], sg["p99_ms"], f"{ratio:.2f}x"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    table = "\n".join(lines) + "\n"
    (RESULTS / "playback.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
