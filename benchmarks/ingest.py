"""Ingest benchmark: N concurrent 720p30 2.5 Mb/s RTMP publishers, raylive vs nginx-rtmp, same run.

For each server and N it reports the CPU of all the server's processes (per stream, in % of one
core) and the time from publisher start to the first playable playlist. Publishers are
`ffmpeg -re -stream_loop -1 -c copy` of one pre-encoded file, so they cost little and the same
for both servers.

    python benchmarks/ingest.py                 # N = 1, 10, 50; writes benchmarks/results/ingest.{json,md}
    python benchmarks/ingest.py --streams 1 5 --measure-s 10

Needs ffmpeg, and Debian's nginx + libnginx-mod-rtmp for the reference (skipped with a note if absent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from raylive.launcher.redis_server import free_port  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results" / "latest"  # scratch; python -m benchmarks keeps dated reports


def source_file() -> Path:
    """20 s of 1280x720p30 H.264 at 2.5 Mb/s (2 s GOP) + AAC, encoded once and cached."""
    path = CACHE / "src_720p30_2500k.flv"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
             "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k",
             "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", str(path)],
            check=True,
        )  # fmt: skip
    return path


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(errors="replace")
    except Exception:  # noqa: BLE001 - any failure means "not playable yet"
        return 0, ""


def loop_publisher(src: Path, url: str) -> subprocess.Popen[bytes]:
    """`ffmpeg -re -stream_loop -1 -c copy`: a real-time publisher that costs little, the same for every server."""
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(src), "-c", "copy",
         "-f", "flv", url],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def save_results(name: str, results: object, table: str) -> None:
    """results/latest/<name>.json and .md (what `python -m benchmarks` collects), and the table on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


def tree_cpu(root: int) -> dict[int, float]:
    out = {}
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return out


def _label(p: psutil.Process) -> str:
    """A process's kind: Ray's title (`ray::StreamIngest`), else its program's name."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "?"
    if cmd and cmd[0].startswith("ray::"):
        return cmd[0].split()[0].split(".")[0]
    if not cmd:
        return p.name()
    prog = Path(cmd[0]).name
    args = [a for a in cmd[1:] if not a.startswith("-") or a == "-m"]
    if prog.startswith("python") and args:
        return Path(args[1] if args[0] == "-m" and len(args) > 1 else args[0]).name
    return prog


def _processes() -> dict[int, tuple[str, float]]:
    out = {}
    for p in psutil.process_iter():
        try:
            t = p.cpu_times()
            out[p.pid] = (_label(p), t.user + t.system)
        except psutil.Error:
            pass
    return out


def _busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


def machine_cpu(seconds: float, exclude: set[int]) -> tuple[float, dict[str, float]]:
    """The whole machine's busy time over `seconds` in % of one core, less the processes in
    `exclude` (the publishers, this script): so Redis, Ray's GCS, raylet and agents, HAProxy,
    Serve and every worker count, whoever started them. Also the busiest kinds of process."""
    exclude = exclude | {os.getpid()}
    before, busy0, start = _processes(), _busy_s(), time.monotonic()
    time.sleep(seconds)
    after, busy1, elapsed = _processes(), _busy_s(), time.monotonic() - start
    by_kind: dict[str, float] = {}
    excluded = 0.0
    for pid, (label, cpu) in after.items():
        used = cpu - before.get(pid, (label, 0.0))[1]
        if pid in exclude:
            excluded += used
        else:
            by_kind[label] = by_kind.get(label, 0.0) + used
    busiest = sorted(by_kind.items(), key=lambda kv: -kv[1])[:10]
    return 100.0 * max(0.0, busy1 - busy0 - excluded) / elapsed, {k: round(100.0 * v / elapsed, 1) for k, v in busiest}


def stream_actor_uss_mb() -> float | None:
    """Median USS (the memory only that process holds) of raylive's stream actors, in MB."""
    uss = []
    for p in psutil.process_iter():
        try:
            if p.cmdline()[0].startswith("ray::StreamIngest"):  # `.push` while it runs one
                uss.append(p.memory_full_info().uss / 1e6)
        except (psutil.Error, IndexError):
            pass
    return round(statistics.median(uss), 1) if uss else None


def stop_process(proc: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    """Ask a server (started in its own session) to stop; kill its whole session if it lingers."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Server:
    name: str
    root_pid: int
    stop: Callable[[], None]
    publish_url: Callable[[int], str]  # stream index -> RTMP URL
    playlist_url: Callable[[int], str]  # stream index -> media playlist URL
    http_base: str = ""
    data_dir: Path | None = None  # raylive's
    dash_url: Callable[[int], str] | None = None  # stream index -> MPD URL (nginx-rtmp's own DASH)


def start_raylive(
    work: Path, n_max: int, extra_env: dict[str, str] | None = None, warm_workers: int | None = None, record: bool = False
) -> Server:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(extra_env or {})}
    rtmp, http = free_port(), free_port()
    data = work / "raylive"
    # Every benchmark publisher comes from 127.0.0.1 and up to 100 start at once.
    warm = "" if warm_workers is None else f"  warm_workers: {warm_workers}\n"
    recording = "recording:\n  enabled: true\n" if record else ""
    (work / "raylive.yaml").write_text(f"rtmp:\n  max_unpublished_per_address: {max(16, n_max)}\n{warm}{recording}")
    log = open(work / "raylive.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "raylive.cli", "up", "--data-dir", str(data), "--host", "127.0.0.1",
         "--rtmp-port", str(rtmp), "--http-port", str(http), "--no-dashboard", "--config", str(work / "raylive.yaml")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while b"raylive is up" not in (work / "raylive.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("raylive did not start; see " + str(work / "raylive.log"))
        time.sleep(0.2)
    token = (data / "admin_token").read_text().strip()
    keys = []
    for i in range(n_max):  # passthrough only: nginx-rtmp does not transcode either
        req = urllib.request.Request(
            f"http://127.0.0.1:{http}/api/v1/streams",
            data=json.dumps({"name": f"bench{i}", "ladder": ["source"]}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            keys.append(json.loads(r.read())["key"])

    return Server(
        "raylive",
        proc.pid,
        lambda: stop_process(proc, signal.SIGTERM, 60),
        lambda i: f"rtmp://127.0.0.1:{rtmp}/live/{keys[i]}",
        lambda i: f"http://127.0.0.1:{http}/live/bench{i}/source/index.m3u8",
        f"http://127.0.0.1:{http}",
        data,
    )


SKIPPED = {"skipped": "nginx with libnginx-mod-rtmp not installed"}


def each_server(tmp: Path, streams: int, warm_workers: int | None = None, record: bool = False) -> Iterator[tuple[str, Server | None]]:
    """raylive (with `streams` stream keys), raylive recording every stream (with `record`), then
    nginx-rtmp (None when it is not installed), each stopped after its turn: never two at a time."""
    starters: list[tuple[str, Callable[[Path], Server | None]]] = [
        ("raylive", lambda w: start_raylive(w, streams, warm_workers=warm_workers))
    ]
    if record:
        starters.append(("raylive+recording", lambda w: start_raylive(w, streams, warm_workers=warm_workers, record=True)))
    for name, starter in [*starters, ("nginx-rtmp", start_nginx)]:
        work = tmp / name
        work.mkdir()
        server = starter(work)
        try:
            yield name, server
        finally:
            if server is not None:
                server.stop()


NGINX_CONF = """
load_module {module};
daemon off;
master_process on;
{user}
worker_processes 1;
error_log {work}/nginx-error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 4096; }}
rtmp {{
  server {{
    listen 127.0.0.1:{rtmp};
    chunk_size 4096;
    application live {{
      live on;
{packaging}
    }}
  }}
}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{http};
    location /hls/ {{ alias {work}/hls/; add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }}
    location /dash/ {{ alias {work}/dash/; add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; }}
  }}
}}
"""
NGINX_PACKAGING = """
      hls on;
      hls_path {work}/hls;
      hls_fragment 2s;
      hls_playlist_length 12s;
      dash on;
      dash_path {work}/dash;
      dash_fragment 2s;
      dash_playlist_length 12s;"""


def start_nginx(work: Path, packaging: bool = True) -> Server | None:
    """nginx-rtmp writing HLS and DASH (with `packaging`; without, RTMP alone)."""
    module = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
    if not shutil.which("nginx") or not module.exists():
        return None
    rtmp, http = free_port(), free_port()
    (work / "hls").mkdir(parents=True, exist_ok=True)
    (work / "dash").mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    # Workers must write HLS into our private temp dir: run them as the current user.
    user = "user root;" if os.geteuid() == 0 else ""
    application = NGINX_PACKAGING.format(work=work) if packaging else ""
    conf.write_text(NGINX_CONF.format(module=module, work=work, rtmp=rtmp, http=http, user=user, packaging=application))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], start_new_session=True)
    deadline = time.monotonic() + 10
    while http_get(f"http://127.0.0.1:{http}/hls/")[0] == 0 and http_get(f"http://127.0.0.1:{http}/hls/x")[0] == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    return Server(
        "nginx-rtmp",
        proc.pid,
        lambda: stop_process(proc, signal.SIGQUIT, 20),
        lambda i: f"rtmp://127.0.0.1:{rtmp}/live/bench{i}",
        lambda i: f"http://127.0.0.1:{http}/hls/bench{i}.m3u8",
        dash_url=lambda i: f"http://127.0.0.1:{http}/dash/bench{i}.mpd",
    )


def run_n(server: Server, src: Path, n: int, measure_s: float, settle_s: float = 0.0, first: int = 0) -> dict[str, Any]:
    """`n` streams published at once (stream indexes from `first`: a repeat takes new ones, since an
    ended stream's playlist stays playable and would look ready at once)."""
    started: dict[int, float] = {}
    pubs = []
    for i in range(first, first + n):
        started[i] = time.monotonic()
        pubs.append(loop_publisher(src, server.publish_url(i)))
    ready: dict[int, float] = {}
    deadline = time.monotonic() + 60 + n
    while len(ready) < n and time.monotonic() < deadline:
        for i in started:
            if i not in ready:
                status, text = http_get(server.playlist_url(i))
                if status == 200 and "#EXTINF" in text:
                    ready[i] = time.monotonic() - started[i]
        time.sleep(0.1)
    time.sleep(settle_s)
    recorded_before = _recorded_bytes(server)
    cpu, busiest = machine_cpu(measure_s, {p.pid for p in pubs})
    recorded_mb_s = (_recorded_bytes(server) - recorded_before) / measure_s / 1e6
    stream_uss = stream_actor_uss_mb()
    alive = sum(p.poll() is None for p in pubs)
    for p in pubs:
        p.terminate()
    for p in pubs:
        p.wait(10)
    waits = sorted(ready.values())
    if len(ready) < n or alive < n:
        # A figure from a run in which publishers failed would flatter the server.
        return {"streams": n, "failed": f"{n - len(ready)} of {n} publishers got no playable playlist, {n - alive} exited"}
    return {
        "streams": n,
        "playable": len(ready),
        "publishers_alive": alive,
        "cpu_pct_total": round(cpu, 1),
        "cpu_pct_per_stream": round(cpu / n, 2),
        "first_playlist_s_median": round(statistics.median(waits), 2) if waits else -1,
        "first_playlist_s_max": round(waits[-1], 2) if waits else -1,
        "busiest_cpu_pct": busiest,
        **({"stream_actor_uss_mb_median": stream_uss} if stream_uss else {}),
        **({"recorded_mb_per_s_per_stream": round(recorded_mb_s / n, 3)} if recorded_mb_s else {}),
    }


def _recorded_bytes(server: Server) -> int:
    """What raylive's recordings (default place: the data dir) hold on disk."""
    root = server.data_dir / "recordings" if server.data_dir else None
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root and root.exists() else 0


MEDIANS = ("cpu_pct_total", "cpu_pct_per_stream", "first_playlist_s_median", "first_playlist_s_max", "recorded_mb_per_s_per_stream")


def combined(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of repeated measurements: their medians and the spread of CPU/stream; any failure fails it."""
    failed = [t for t in tries if "failed" in t]
    if failed or len(tries) == 1:
        return failed[0] if failed else tries[0]
    row = dict(tries[0])
    for key in MEDIANS:
        if key in row:
            row[key] = round(statistics.median(t[key] for t in tries), 3)
    per_stream = [t["cpu_pct_per_stream"] for t in tries]
    row |= {"repeats": len(tries), "cpu_pct_per_stream_runs": per_stream}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 10, 50])
    ap.add_argument("--measure-s", type=float, default=20.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--settle-s", type=float, default=10.0, help="wait after the last playlist, before measuring CPU")
    ap.add_argument("--warm-workers", type=int, default=None, help="raylive's rtmp.warm_workers (default: its own)")
    ap.add_argument("--repeats", type=int, default=1, help="measure each N this many times (medians, and the spread of CPU/stream)")
    ap.add_argument("--record", action="store_true", help="also run raylive recording every stream (its cost and bytes written)")
    args = ap.parse_args()
    src = source_file()
    results: dict[str, Any] = {
        "source": "1280x720p30 H.264 2.5 Mb/s + AAC 128k, 2 s GOP",
        "machine_cores": os.cpu_count(),
        "warm_workers": args.warm_workers,
        "servers": {},
    }
    with tempfile.TemporaryDirectory(prefix="raylive-bench-") as tmp:
        for name, server in each_server(Path(tmp), max(args.streams) * args.repeats, args.warm_workers, args.record):
            if server is None:
                results["servers"][name] = SKIPPED
                continue
            time.sleep(args.settle_s)  # past start-up (and raylive's warm workers being started)
            idle, idle_busiest = machine_cpu(args.idle_s, set())
            rows = []
            for n in args.streams:
                tries = []
                for k in range(args.repeats):
                    tries.append(run_n(server, src, n, args.measure_s, args.settle_s, first=k * n))
                    time.sleep(args.settle_s)  # the streams end and their actors exit
                rows.append(combined(tries))
            results["servers"][name] = {"idle_cpu_pct": round(idle, 1), "idle_busiest_cpu_pct": idle_busiest, "runs": rows}
            print(f"{name}: idle {idle:.1f}% {rows}", flush=True)
    save_results("ingest", results, render(results))
    failed = [
        f"{name} N={r['streams']}: {r['failed']}" for name, d in results["servers"].items() for r in d.get("runs", []) if "failed" in r
    ]
    if failed:
        sys.exit("FAILED: " + "; ".join(failed))


def cpu_rows(servers: dict[str, Any], columns: int, cells: Callable[[str, dict[str, Any], str, str], list[str]]) -> list[str]:
    """Table rows per server and N: `cells(name, row, CPU per stream (median, range of the runs),
    ratio to nginx-rtmp's at the same N)` gives a measured row's lines; a skipped server or a
    failed run gets one line saying so, padded to `columns`."""
    ref = {r["streams"]: r for r in servers.get("nginx-rtmp", {}).get("runs", []) if "failed" not in r}
    pad = " |" * (columns - 3)
    lines = []
    for name, data in servers.items():
        if "runs" not in data:
            lines.append(f"| - | {name} | {data['skipped']} |{pad}")
            continue
        for r in data["runs"]:
            if "failed" in r:
                lines.append(f"| {r['streams']} | {name} | FAILED: {r['failed']} |{pad}")
                continue
            runs, base = r.get("cpu_pct_per_stream_runs"), ref.get(r["streams"])
            per_stream = f"{r['cpu_pct_per_stream']} ({min(runs)}–{max(runs)}, {len(runs)} runs)" if runs else str(r["cpu_pct_per_stream"])
            ratio = f"{r['cpu_pct_per_stream'] / base['cpu_pct_per_stream']:.1f}x" if base and base["cpu_pct_per_stream"] else "-"
            lines += cells(name, r, per_stream, ratio)
    return lines


def render(results: dict[str, Any]) -> str:
    servers = results["servers"]
    lines = [
        f"Ingest: {results['source']}; {results['machine_cores']} cores. CPU in % of one core: the whole machine's busy time",
        "less the publishers' and this script's (every process a server starts counts, and the machine's own background).",
        "",
        "| N | server | playable | CPU total % | CPU/stream % | first playlist median s | max s | CPU/stream vs nginx |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cells(name: str, r: dict[str, Any], per_stream: str, ratio: str) -> list[str]:
        row = [
            f"| {r['streams']} | {name} | {r['playable']}/{r['streams']} | {r['cpu_pct_total']} | {per_stream} | "
            f"{r['first_playlist_s_median']} | {r['first_playlist_s_max']} | {ratio if name != 'nginx-rtmp' else '1.0x'} |"
        ]
        if "recorded_mb_per_s_per_stream" in r:
            row.append(f"|  | (recording writes {r['recorded_mb_per_s_per_stream']} MB/s per stream) | | | | | | |")
        return row

    lines += cpu_rows(servers, 8, cells)
    for name, data in servers.items():
        if "idle_cpu_pct" in data:
            busiest = ", ".join(f"{k} {v}" for k, v in data["idle_busiest_cpu_pct"].items() if v >= 0.1)
            lines.append(f"\nIdle CPU of {name} (no streams): {data['idle_cpu_pct']}% ({busiest})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
