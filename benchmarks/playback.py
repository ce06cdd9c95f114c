"""Playback benchmark: requests/s and latency of a live media playlist and a 2 s segment.

Measured with wrk through raylive's Serve endpoint (Serve's own proxy, and Ray's HAProxy ingress,
raylive's default), side by side in the same run with nginx serving the very same bytes as static
files.

    python benchmarks/playback.py                  # writes benchmarks/results/playback.{json,md}
    python benchmarks/playback.py --duration 5 --connections 32 --repeats 5

Needs ffmpeg, wrk and nginx (Debian); HAProxy comes with ray[serve] on Linux.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
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

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": round(rps, 1), "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
    }  # fmt: skip


class StaticNginx:
    """nginx serving the bytes raylive served a moment before, as static files (the reference)."""

    def __init__(self, work: Path) -> None:
        self.www = work / "www"
        self.www.mkdir(parents=True)
        self.port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        (work / "nginx.conf").write_text(NGINX_STATIC.format(work=work, port=self.port, user=user))
        self.proc = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)], start_new_session=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def serve(self, playlist: bytes, segment: bytes) -> None:
        (self.www / "index.m3u8").write_bytes(playlist)
        (self.www / "seg.m4s").write_bytes(segment)
        deadline = time.monotonic() + 10
        while http_get(self.url("index.m3u8"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT, 20)


def _errors(sample: dict[str, Any]) -> int:
    return int(sample["non_2xx"]) + int(sample["socket_errors"])


def summary(samples: list[dict[str, Any]], ref: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Repeated wrk runs of one URL: medians, each run's requests/s, and (with `ref`, nginx's runs
    taken right after each) the ratio to nginx per run, its median and range."""
    out: dict[str, Any] = {key: statistics.median(s[key] for s in samples) for key in ("rps", "p50_ms", "p99_ms")}
    out["rps_runs"] = [s["rps"] for s in samples]
    if ref is not None:
        ratios = [s["rps"] / r["rps"] for s, r in zip(samples, ref, strict=True) if r["rps"]]
        out |= {"vs_nginx": round(statistics.median(ratios), 3), "vs_nginx_runs": [round(x, 3) for x in ratios]}
    return out


def measure_raylive(
    mode: str, env: dict[str, str], work: Path, nginx: StaticNginx, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """raylive's row, and nginx's runs taken between raylive's (the same bytes, just after)."""
    server = start_raylive(work, 1, env)
    pub = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(source_file()), "-c", "copy",
         "-f", "flv", server.publish_url(0)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ours: dict[str, list[dict[str, Any]]] = {"playlist": [], "segment": []}
    ref: dict[str, list[dict[str, Any]]] = {"playlist": [], "segment": []}
    try:
        playlist_url = server.playlist_url(0)
        deadline = time.monotonic() + 60
        for _ in range(args.repeats):
            while True:
                status, text = http_get(playlist_url)
                segs = [line for line in text.splitlines() if line.endswith(".m4s")]
                if status == 200 and len(segs) >= 2:
                    break
                if time.monotonic() > deadline:
                    return {"mode": mode, "failed": "the stream did not become playable in 60 s"}, ref
                time.sleep(0.2)
            # The newest whole segment: it outlives the repeat (segment TTL) and every run of it.
            segment_url = playlist_url.rsplit("/", 1)[0] + "/" + segs[-1]
            with urllib_open(segment_url) as r:
                segment = r.read()
            nginx.serve(text.encode(), segment)
            for kind, url, static in (("segment", segment_url, "seg.m4s"), ("playlist", playlist_url, "index.m3u8")):
                ours[kind].append(wrk(url, args.duration, args.connections))
                ref[kind].append(wrk(nginx.url(static), args.duration, args.connections))
        bad = {kind: sum(_errors(s) for s in runs) for kind, runs in ours.items()}
        if any(bad.values()):
            return {"mode": mode, "failed": f"error responses or socket errors: {bad}"}, ref
        row = {"mode": mode, "segment_bytes": len(segment), "repeats": args.repeats}
        return row | {kind: summary(ours[kind], ref[kind]) for kind in ours}, ref
    finally:
        pub.terminate()
        pub.wait(10)
        server.stop()


def urllib_open(url: str):  # type: ignore[no-untyped-def]
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="wrk runs per URL, each followed by nginx's of the same bytes")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "ffmpeg"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (apt-get install {tool})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="raylive-playback-") as tmp:
        modes = [("serve proxy", {"RAY_SERVE_ENABLE_HA_PROXY": "0"})]
        if haproxy_available():
            modes.append(("haproxy ingress (default)", {}))
        nginx = StaticNginx(Path(tmp) / "nginx")
        ref: dict[str, list[dict[str, Any]]] = {"playlist": [], "segment": []}
        try:
            for i, (mode, env) in enumerate(modes):
                work = Path(tmp) / f"raylive{i}"
                work.mkdir()
                row, runs = measure_raylive(mode, env, work, nginx, args)
                rows.append(row)
                for kind in ref:
                    ref[kind] += runs[kind]
                print(row, flush=True)
        finally:
            nginx.stop()
        if all(ref.values()):
            rows.append({"mode": "nginx static", "repeats": len(ref["segment"])} | {kind: summary(ref[kind]) for kind in ref})
    result = {"connections": args.connections, "duration_s": args.duration, "cores": os.cpu_count(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "playback.json").write_text(json.dumps(result, indent=2))
    table = render(result)
    (RESULTS / "playback.md").write_text(table)
    print(table)
    if any("failed" in r for r in rows):
        sys.exit(1)


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"Playback through wrk, {result['connections']} connections, {result['duration_s']:g} s a run, {result['cores']} cores; "
        "medians of the runs (range); each raylive run is followed by nginx's of the same bytes, and the "
        "ratio is taken run by run.",
        "",
        "| mode | playlist req/s | p50 / p99 ms | playlist vs nginx | segment req/s | p50 / p99 ms | segment vs nginx |",
        "|---|---|---|---|---|---|---|",
    ]

    def cells(s: dict[str, Any]) -> list[str]:
        spread = f"{s['rps']:.0f} ({min(s['rps_runs']):.0f}–{max(s['rps_runs']):.0f})"
        ratio = f"{s['vs_nginx']:.3f}x ({min(s['vs_nginx_runs']):.3f}–{max(s['vs_nginx_runs']):.3f})" if "vs_nginx" in s else "1"
        return [spread, f"{s['p50_ms']:g} / {s['p99_ms']:g}", ratio]

    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['mode']} | FAILED: {r['failed']} | | | | | |")
            continue
        lines.append("| " + " | ".join([r["mode"], *cells(r["playlist"]), *cells(r["segment"])]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
