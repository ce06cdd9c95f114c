"""The RTMP server alone: raylive's `RtmpServer` vs nginx-rtmp, the same real-time publishers, same run.

What the ingest benchmark cannot separate: how much of a stream's CPU is RTMP itself (sockets,
chunk and AMF parsing, the batching towards the stream's actor) and how much is Ray, the stream
actor, packaging and Redis. Here raylive's server runs in a process of its own, on uvloop as in
the gateway actor (Ray runs async actors on uvloop), handing each batch to a sink that only counts
what it is given; nginx-rtmp runs `live on` with no HLS, DASH or viewers, so it too only parses.
Each publisher is `ffmpeg -re -stream_loop -1 -c copy` of the ingest benchmark's 720p30 2.5 Mb/s
file. The figure is each server's own processes' CPU time (psutil, user + system) over the window,
in % of one core per stream.

    python benchmarks/rtmp_server.py                        # N = 10, 30; 3 repeats each
    python benchmarks/rtmp_server.py --streams 10 --measure-s 10 --repeats 1

A run in which a publisher exited, or (raylive) a stream delivered under 90 % of its real-time
video, reports a failure, not a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import (  # noqa: E402
    Server,
    combined,
    cpu_rows,
    loop_publisher,
    save_results,
    source_file,
    start_nginx,
    stop_process,
)
from raylive.launcher.redis_server import free_port  # noqa: E402
from raylive.runtime.rtmp.chunk import VIDEO, RtmpMessage  # noqa: E402
from raylive.runtime.rtmp.server import RtmpConnection, RtmpServer, RtmpServerConfig  # noqa: E402

FPS = 30  # the source file's frame rate


class CountingSink:
    def __init__(self, counts: Counter[str], name: str) -> None:
        self._counts, self._name = counts, name

    async def send(self, messages: list[RtmpMessage]) -> None:
        self._counts[self._name] += sum(m.type_id == VIDEO for m in messages)

    async def close(self, reason: str) -> None:
        pass


class AnyKey:
    """Every publish is accepted; each stream's video messages are counted under its key."""

    def __init__(self) -> None:
        self.video_messages: Counter[str] = Counter()

    async def open(self, conn: RtmpConnection, app: str, stream_key: str, query: str = "") -> CountingSink:
        return CountingSink(self.video_messages, stream_key)


def serve(port: int, counts_path: Path, read_interval_s: float) -> None:
    """The child process: raylive's RTMP server until SIGTERM; video message counts every 0.5 s."""
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()

    async def run() -> None:
        auth = AnyKey()
        server = RtmpServer(auth, RtmpServerConfig(max_unpublished_per_address=1000, read_interval_s=read_interval_s))
        await server.start("127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        while not stop.is_set():
            counts_path.write_text(json.dumps(auth.video_messages))
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass
        await server.stop()

    loop.run_until_complete(run())


def start_raylive_rtmp(work: Path, read_interval_s: float) -> Server:
    port = free_port()
    counts = work / "video_messages.json"
    args = ["--serve", str(port), "--counts", str(counts), "--read-interval-s", str(read_interval_s)]
    proc = subprocess.Popen([sys.executable, __file__, *args], start_new_session=True)
    deadline = time.monotonic() + 30
    while not counts.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("raylive's RTMP server did not start")
        time.sleep(0.1)
    return Server(
        "raylive RtmpServer",
        proc.pid,
        lambda: stop_process(proc, signal.SIGTERM, 20),
        lambda i: f"rtmp://127.0.0.1:{port}/live/bench{i}",
        lambda i: "",
        data_dir=work,  # video_messages.json: what the sink was given
    )


def server_cpu_s(root: int) -> float:
    """User + system CPU seconds of a server's process and its children (nginx's workers)."""
    total = 0.0
    try:
        top = psutil.Process(root)
        for p in [top, *top.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
    except psutil.NoSuchProcess:
        pass
    return total


def _video_counts(server: Server) -> Counter[str]:
    path = server.data_dir / "video_messages.json" if server.data_dir else None
    return Counter(json.loads(path.read_text())) if path is not None else Counter()


def run_n(server: Server, src: Path, n: int, measure_s: float, settle_s: float, first: int) -> dict[str, Any]:
    pubs = [loop_publisher(src, server.publish_url(i)) for i in range(first, first + n)]
    try:
        time.sleep(settle_s)  # every publisher connected and in its steady state
        cpu_before, counts_before, started = server_cpu_s(server.root_pid), _video_counts(server), time.monotonic()
        time.sleep(measure_s)
        cpu = server_cpu_s(server.root_pid) - cpu_before
        elapsed = time.monotonic() - started
        counts = _video_counts(server)
        alive = sum(p.poll() is None for p in pubs)
    finally:
        for p in pubs:
            p.terminate()
        for p in pubs:
            p.wait(10)
    if alive < n:
        return {"streams": n, "failed": f"{n - alive} of {n} publishers exited"}
    if server.data_dir is not None:  # raylive's counts what its sink was given
        rates = [(counts[f"bench{i}"] - counts_before[f"bench{i}"]) / elapsed for i in range(first, first + n)]
        if min(rates) < 0.9 * FPS:
            # counts are written every 0.5 s: a margin of 15 frames over the window
            return {"streams": n, "failed": f"a stream delivered {min(rates):.1f} video messages/s of {FPS}"}
    pct = 100 * cpu / elapsed
    return {"streams": n, "cpu_pct_total": round(pct, 2), "cpu_pct_per_stream": round(pct / n, 3)}


def each_server(tmp: Path, read_interval_s: float) -> Iterator[tuple[str, Server | None]]:
    starters: list[tuple[str, Callable[[Path], Server | None]]] = [
        ("raylive RtmpServer", lambda w: start_raylive_rtmp(w, read_interval_s)),
        ("nginx-rtmp", lambda w: start_nginx(w, packaging=False)),
    ]
    for name, starter in starters:
        work = tmp / name.replace(" ", "-")
        work.mkdir()
        server = starter(work)
        try:
            yield name, server
        finally:
            if server is not None:
                server.stop()


def render(results: dict[str, Any]) -> str:
    servers = results["servers"]
    lines = [
        f"RTMP server alone: {results['source']}; {results['machine_cores']} cores; each server's own processes' CPU,",
        "in % of one core per stream (median of the runs, and their range). raylive: `RtmpServer` on uvloop, a sink that",
        f"counts, `read_interval_s` {results['read_interval_s']}; nginx-rtmp: `live on`, no HLS/DASH.",
        "",
        "| N | server | CPU/stream % (runs) | vs nginx-rtmp |",
        "|---|---|---|---|",
    ]
    lines += cpu_rows(servers, 4, lambda name, r, per_stream, ratio: [f"| {r['streams']} | {name} | {per_stream} | {ratio} |"])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--measure-s", type=float, default=20.0)
    ap.add_argument("--settle-s", type=float, default=5.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--read-interval-s", type=float, default=RtmpServerConfig.read_interval_s, help="raylive's rtmp.read_interval_s")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--counts", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.counts, args.read_interval_s)
        return
    src = source_file()
    results: dict[str, Any] = {
        "source": "1280x720p30 H.264 2.5 Mb/s + AAC 128k",
        "machine_cores": os.cpu_count(),
        "read_interval_s": args.read_interval_s,
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="raylive-bench-") as tmp:
        for name, server in each_server(Path(tmp), args.read_interval_s):
            if server is None:
                results["servers"][name] = {"skipped": "nginx with libnginx-mod-rtmp not installed"}
                continue
            rows = []
            for n in args.streams:
                tries = [run_n(server, src, n, args.measure_s, args.settle_s, first=k * n) for k in range(args.repeats)]
                rows.append(combined(tries))
            results["servers"][name] = {"runs": rows}
            print(f"{name}: {rows}", flush=True)
    save_results("rtmp_server", results, render(results))
    failed = [
        f"{name} N={r['streams']}: {r['failed']}" for name, d in results["servers"].items() for r in d.get("runs", []) if "failed" in r
    ]
    if failed:
        sys.exit("FAILED: " + "; ".join(failed))


if __name__ == "__main__":
    main()
