"""One benchmark report: every benchmark, each beside its reference in the same run.

    pip install -e '.[bench]' && python -m benchmarks          # full run (≈ 45 min on 2 cores)
    python -m benchmarks --quick                               # shorter runs, for a look (≈ 15 min)
    python -m benchmarks --only latency capacity               # some of them

Installs the references it needs from Debian when missing (nginx, libnginx-mod-rtmp, wrk, ffmpeg;
with sudo unless root), runs each script in its own process session (killed with everything it
started if it overruns), and writes:

- `benchmarks/results/<date>.json`: the machine (cores, CPU, memory, load before and after), the
  commit, and each benchmark's results;
- `benchmarks/report.md`: the readable report (tables and plots), linked from the README;
- `benchmarks/results/<date>/*.png`: the plots (matplotlib).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LATEST = HERE / "results" / "latest"
REPORT = HERE / "report.md"

# name -> (script args for a full run, args for --quick, what it compares)
BENCHMARKS: dict[str, tuple[list[str], list[str], str]] = {
    "ingest": ([], ["--streams", "1", "10", "--measure-s", "10", "--idle-s", "5"], "CPU per passthrough stream vs nginx-rtmp"),
    "rtmp_server": ([], ["--streams", "10", "--measure-s", "10", "--repeats", "1"], "the RTMP server alone vs nginx-rtmp `live on`"),
    "latency": (
        [],
        ["--repeats", "2", "--seconds", "12", "--player-s", "20"],
        "LL-HLS/LL-DASH vs nginx-rtmp HLS/DASH: first playable, frame → listed, players' latency",
    ),
    "capacity": ([], ["--steps", "10", "20", "40", "--window-s", "16"], "streams held in real time vs nginx-rtmp"),
    "transcode": ([], ["--seconds", "10", "--repeats", "1"], "ABR ladder CPU-seconds vs the ffmpeg CLI"),
    "playback": ([], ["--duration", "5"], "playlist and segment requests/s through Serve vs nginx static"),
    "viewers": ([], ["--viewers", "100", "300", "--seconds", "15"], "LL-HLS viewers within one part of live: Serve vs an edge cache"),
    "analytics": ([], ["--events", "100000", "--rows", "1000000", "--repeats", "3"], "analytics pipeline and 24 h report query"),
    "fuzz_rtmp": ([], ["--inputs", "100000"], "mutated RTMP inputs through the parsers: crashes, memory"),
    "soak": ([], ["--minutes", "3", "--warmup-s", "60"], "RSS growth of every process over a long run"),
}
TIMEOUT_S = {"soak": 3600, "capacity": 2400, "transcode": 2400, "analytics": 2400}
DEBIAN = {"nginx": "nginx", "wrk": "wrk", "ffmpeg": "ffmpeg", "varnishd": "varnish"}


def install_references() -> None:
    need = [pkg for tool, pkg in DEBIAN.items() if not shutil.which(tool)]
    if not Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists():
        need.append("libnginx-mod-rtmp")
    if not need:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"installing from Debian: {' '.join(need)}", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *need], check=True, env=env)


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def commit() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def stop_tree(root: psutil.Process) -> None:
    """The script and every process under it: the servers it starts run in sessions of their own."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=20)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def run_one(name: str, args: list[str]) -> dict[str, Any]:
    """One script; on overrun (or if this runner is stopped) it and everything it started are stopped."""
    (LATEST / f"{name}.json").unlink(missing_ok=True)
    started = time.monotonic()
    load = os.getloadavg()[0]
    at_commit = commit()
    proc = subprocess.Popen([sys.executable, str(HERE / f"{name}.py"), *args], cwd=ROOT)
    try:
        rc = proc.wait(TIMEOUT_S.get(name, 1200))
    except subprocess.TimeoutExpired:
        rc = -1
    finally:
        if proc.poll() is None:
            stop_tree(psutil.Process(proc.pid))
    entry: dict[str, Any] = {
        "rc": rc,
        "wall_s": round(time.monotonic() - started, 1),
        "load_1min_at_start": round(load, 2),
        "args": args,
        "commit": at_commit,
    }
    path = LATEST / f"{name}.json"
    if rc == 0 and path.exists():
        entry["results"] = json.loads(path.read_text())
        md = LATEST / f"{name}.md"
        entry["table"] = md.read_text() if md.exists() else ""
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs of every benchmark")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get the references")
    args = ap.parse_args()
    # Stopped from outside: unwind through run_one's `finally`, which stops the running script's tree.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        sys.exit("matplotlib is needed for the plots: pip install -e '.[bench]'")
    if not args.no_install:
        install_references()
    LATEST.mkdir(parents=True, exist_ok=True)
    date = datetime.date.today().isoformat()
    report: dict[str, Any] = {
        "date": date,
        "commit": commit(),
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "load_1min_before": round(os.getloadavg()[0], 2),
        "benchmarks": {},
    }
    for name, (full, quick, _) in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"=== {name}", flush=True)
        report["benchmarks"][name] = run_one(name, quick if args.quick else full)
        print(f"=== {name}: rc {report['benchmarks'][name]['rc']} in {report['benchmarks'][name]['wall_s']} s", flush=True)
    report["load_1min_after"] = round(os.getloadavg()[0], 2)
    out = HERE / "results" / f"{date}.json"
    if args.only and out.exists():  # a partial run adds to (or replaces parts of) the day's report
        previous = json.loads(out.read_text())
        for entry in previous.get("benchmarks", {}).values():
            entry.setdefault("commit", previous.get("commit", "?"))
        report["benchmarks"] = {**previous.get("benchmarks", {}), **report["benchmarks"]}
    out.write_text(json.dumps(report, indent=2))
    from .report import write_report

    write_report(report, HERE / "results" / date, REPORT, {n: b[2] for n, b in BENCHMARKS.items()})
    print(f"wrote {out.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    failed = [n for n, b in report["benchmarks"].items() if b["rc"] != 0]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
