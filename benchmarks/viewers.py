"""LL-HLS viewers benchmark: how many viewers of one stream stay within one part of live, through
Serve's ingress and through an edge cache (Varnish, `configs/varnish-edge.vcl`) in front of it.

One passthrough 720p30 publisher; N simulated LL-HLS viewers, each doing what hls.js does for the
video: the multivariant playlist once (its session), then a blocking reload for the next part
(`_HLS_msn`/`_HLS_part`) and a GET of each new part, on a keep-alive connection of its own. This
client also hears the stream's playlist messages in the media Redis (what the playback replicas
hear), so each part has a publication time; a viewer's delay for a part is from that time to the
moment it has the part's bytes. A viewer is "within one part of live" when its p95 delay is at
most PART-TARGET and it saw no error. The load generator shares the 2 cores with raylive, Redis,
Ray and the edge cache, in one asyncio process per core.

    python benchmarks/viewers.py                              # N = 100, 300, 1000 on each path
    python benchmarks/viewers.py --viewers 50 --seconds 10    # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
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

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import Server, http_get, loop_publisher, save_results, source_file, start_raylive, stop_process  # noqa: E402
from raylive.launcher.redis_server import free_port  # noqa: E402
from raylive.runtime.packaging.hls import playlist_edge  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PART_RE = re.compile(rb'#EXT-X-PART:DURATION=[\d.]+,URI="([^"]+)"')


class Conn:
    """A keep-alive HTTP/1.1 connection with the least parsing a GET needs."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                body += await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, body
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]) if b"content-length:" in lower else 0
        return status, await self.reader.readexactly(length)


async def viewer(host: str, port: int, base: str, until: float, got: dict[str, float], errors: list[str]) -> None:
    conn = Conn(host, port)
    try:
        status, master = await conn.get(f"{base}/index.m3u8")
        uri = next(line for line in master.decode().splitlines() if line.startswith("source/"))
        playlist = f"{base}/{uri}"
        status, text = await conn.get(playlist)
        edge = playlist_edge(text.decode())
        seen: set[bytes] = set(PART_RE.findall(text))
        while time.time() < until:
            status, text = await conn.get(f"{playlist}&_HLS_msn={edge.next_msn}&_HLS_part={edge.open_parts}")
            if status != 200:
                errors.append(f"playlist {status}")
                await asyncio.sleep(0.2)
                continue
            edge = playlist_edge(text.decode())
            for part in PART_RE.findall(text):
                if part not in seen:
                    seen.add(part)
                    status, data = await conn.get(f"{base}/source/{part.decode()}")
                    if status != 200 or not data:
                        errors.append(f"part {status}")
                    got[part.decode()] = time.time()
    except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError) as exc:
        errors.append(type(exc).__name__)


def generator(host: str, port: int, base: str, n: int, seconds: float, out: Any) -> None:
    """One load-generator process: `n` viewers for `seconds`; puts (per-viewer arrivals, errors)."""

    async def run() -> list[tuple[dict[str, float], list[str]]]:
        until = time.time() + seconds
        results: list[tuple[dict[str, float], list[str]]] = [({}, []) for _ in range(n)]
        await asyncio.gather(*(viewer(host, port, base, until, got, errs) for got, errs in results))
        return results

    out.put(asyncio.run(run()))


def published_parts(media_url: str, name: str, stop: Any, out: Any) -> None:
    """Part URI -> when the stream actor published the playlist that first lists it."""
    pubsub = redis.Redis.from_url(media_url).pubsub()
    pubsub.subscribe(f"rl:playlists:{name}")
    first: dict[str, float] = {}
    while not stop.is_set():
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None and message["data"].startswith(b"source/index.m3u8\n"):
            now = time.time()
            for part in PART_RE.findall(message["data"]):
                first.setdefault(part.decode(), now)
    out.put(first)


def run_step(host: str, port: int, base: str, media_url: str, name: str, n: int, seconds: float, part_target: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    listener = ctx.Process(target=published_parts, args=(media_url, name, stop, out))
    listener.start()
    procs = max(1, min(os.cpu_count() or 1, 2))
    results: Any = ctx.Queue()
    gens = [ctx.Process(target=generator, args=(host, port, base, n // procs + (i < n % procs), seconds, results)) for i in range(procs)]
    for g in gens:
        g.start()
    viewers = [v for _ in gens for v in results.get(timeout=seconds + 60)]
    for g in gens:
        g.join(10)
    stop.set()
    published = out.get(timeout=10)
    listener.join(10)
    delays, within, errors = [], 0, 0
    kinds: dict[str, int] = {}
    for got, errs in viewers:
        mine = [t - published[p] for p, t in got.items() if p in published]
        delays += mine
        errors += len(errs)
        for e in errs:
            kinds[e] = kinds.get(e, 0) + 1
        if mine and not errs and sorted(mine)[int(0.95 * (len(mine) - 1))] <= part_target:
            within += 1
    delays.sort()
    return {
        "viewers": n,
        "within_one_part": within,
        "errors": errors,
        "error_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:5]),
        "parts_received": len(delays),
        "delay_s_p50": round(statistics.median(delays), 3) if delays else None,
        "delay_s_p95": round(delays[int(0.95 * (len(delays) - 1))], 3) if delays else None,
        "requests_per_s": round(2 * len(delays) / seconds, 1),
    }


VARNISH_CONF = ROOT / "configs" / "varnish-edge.vcl"


def start_varnish(work: Path, origin_port: int) -> tuple[subprocess.Popen[bytes], int] | None:
    if not shutil.which("varnishd"):
        return None
    port = free_port()
    vcl = work / "edge.vcl"
    vcl.write_text(VARNISH_CONF.read_text().replace('.port = "8000"', f'.port = "{origin_port}"'))
    proc = subprocess.Popen(
        ["varnishd", "-F", "-j", "none", "-a", f"127.0.0.1:{port}", "-f", str(vcl), "-n", str(work / "varnish"), "-s", "malloc,256m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while http_get(f"http://127.0.0.1:{port}/live/x/index.m3u8")[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    src = source_file()
    results: dict[str, Any] = {"machine_cores": os.cpu_count(), "seconds": args.seconds, "paths": {}}
    with tempfile.TemporaryDirectory(prefix="raylive-viewers-") as tmp:
        work = Path(tmp)
        server: Server = start_raylive(work, 1)
        pub = loop_publisher(src, server.publish_url(0))
        edge = None
        try:
            deadline = time.monotonic() + 60
            text = ""
            while "#EXTINF" not in text and time.monotonic() < deadline:
                text = http_get(server.playlist_url(0))[1]
                time.sleep(0.5)
            part_target = playlist_edge(text).part_target
            assert server.data_dir is not None
            media_url = json.loads((server.data_dir / "raylive.json").read_text())["media_redis_url"]
            origin_port = int(server.http_base.rsplit(":", 1)[1])
            edge = start_varnish(work, origin_port)
            paths = {"through Serve": origin_port, **({"through the edge cache": edge[1]} if edge else {})}
            for label, port in paths.items():
                rows = []
                for n in args.viewers:
                    row = run_step("127.0.0.1", port, "/live/bench0", media_url, "bench0", n, args.seconds, part_target)
                    if pub.poll() is not None:
                        row["failed"] = "the publisher stopped"
                    rows.append(row)
                    print(label, json.dumps(row), flush=True)
                results["paths"][label] = rows
            if edge is None:
                results["paths"]["through the edge cache"] = {"skipped": "varnishd not installed"}
            results["part_target_s"] = part_target
        finally:
            pub.terminate()
            pub.wait(10)
            if edge is not None:
                stop_process(edge[0], signal.SIGTERM, 10)
            server.stop()
    save_results("viewers", results, render(results))


def render(results: dict[str, Any]) -> str:
    lines = [
        f"LL-HLS viewers of one 720p passthrough stream, {results['seconds']:.0f} s per step, {results['machine_cores']} cores shared "
        f"with the load generator; a viewer is within one part when its p95 delay ≤ PART-TARGET ({results.get('part_target_s')} s).",
        "",
        "| path | viewers | within one part | errors | delay p50 / p95 s | requests/s |",
        "|---|---|---|---|---|---|",
    ]
    for label, rows in results["paths"].items():
        if isinstance(rows, dict):
            lines.append(f"| {label} | {rows['skipped']} | | | | |")
            continue
        for r in rows:
            within = r.get("failed") or f"{r['within_one_part']}/{r['viewers']}"
            lines.append(
                f"| {label} | {r['viewers']} | {within} | {r['errors']} | {r['delay_s_p50']} / {r['delay_s_p95']} | {r['requests_per_s']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
