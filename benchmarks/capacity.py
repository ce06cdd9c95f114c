"""Capacity benchmark: how many passthrough streams a server holds in real time, raylive vs nginx-rtmp.

Publishers (`ffmpeg -re -stream_loop -1 -c copy` of a 720p30 2.5 Mb/s file, 2 s GOP) are added
in steps; after each step every stream's media playlist is polled for `--window-s`. A step holds
when every publisher is still connected and every stream listed at least 80 % of the window's
media in new segments (a stream that falls behind real time lists fewer). The result is the
largest step held. The publishers share the machine with the server (they cost ≈ 0.5 % of a
core each here), so the same numbers of them load both servers alike.

    python benchmarks/capacity.py                # steps 10 20 40 60 80 100; results/capacity.{json,md}
    python benchmarks/capacity.py --steps 5 10 --window-s 10
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import SKIPPED, Server, each_server, http_get, loop_publisher, save_results, source_file, tree_cpu  # noqa: E402

SEGMENT_RE = re.compile(r"#EXTINF:([\d.]+),[^\n]*\n(?:#[^\n]*\n)*([^#\s][^\n]*)")
HELD = 0.8


def listed(server: Server, i: int) -> dict[str, float]:
    status, text = http_get(server.playlist_url(i))
    return {uri: float(d) for d, uri in SEGMENT_RE.findall(text)} if status == 200 else {}


def run_steps(server: Server, src: Path, steps: list[int], window_s: float) -> list[dict[str, object]]:
    pubs: list[subprocess.Popen[bytes]] = []
    rows: list[dict[str, object]] = []
    try:
        for n in steps:
            while len(pubs) < n:
                pubs.append(loop_publisher(src, server.publish_url(len(pubs))))
            deadline = time.monotonic() + 60 + n
            while time.monotonic() < deadline and not all(listed(server, i) for i in range(n)):
                time.sleep(0.5)
            seen = [set(listed(server, i)) for i in range(n)]
            media = [0.0] * n
            cpu_before = tree_cpu(server.root_pid)
            start = time.monotonic()
            while time.monotonic() - start < window_s:
                time.sleep(1.0)
                for i in range(n):
                    for uri, d in listed(server, i).items():
                        if uri not in seen[i]:
                            seen[i].add(uri)
                            media[i] += d
            elapsed = time.monotonic() - start
            cpu_after = tree_cpu(server.root_pid)
            cpu = 100.0 * sum(t - cpu_before.get(pid, 0.0) for pid, t in cpu_after.items()) / elapsed
            alive = sum(p.poll() is None for p in pubs)
            worst = min(media) / elapsed if media else 0.0
            held = alive == n and worst >= HELD
            row = {"streams": n, "publishers_alive": alive, "worst_media_per_wall_s": round(worst, 2), "cpu_pct": round(cpu, 1)}
            rows.append({**row, "held": held})
            print(server.name, json.dumps(rows[-1]), flush=True)
            if not held:
                break
    finally:
        for p in pubs:
            p.terminate()
        for p in pubs:
            p.wait(10)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 20, 40, 60, 80, 100])
    ap.add_argument("--window-s", type=float, default=20.0)
    args = ap.parse_args()
    src = source_file()
    results: dict[str, object] = {"machine_cores": os.cpu_count(), "window_s": args.window_s, "servers": {}}
    with tempfile.TemporaryDirectory(prefix="raylive-capacity-") as tmp:
        for name, server in each_server(Path(tmp), max(args.steps)):
            if server is None:
                results["servers"][name] = SKIPPED  # type: ignore[index]
                continue
            rows = run_steps(server, src, args.steps, args.window_s)
            held = [r["streams"] for r in rows if r["held"]]
            results["servers"][name] = {  # type: ignore[index]
                "max_streams_held": max(held) if held else 0,
                "all_steps_held": len(held) == len(args.steps),
                "steps": rows,
            }
    save_results("capacity", results, render(results))


def render(results: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"Capacity: 720p30 2.5 Mb/s passthrough streams held in real time ({results['machine_cores']} cores,"
        " publishers on the same machine).",
        "",
        "| server | max streams held | steps (streams: media s per wall s of the slowest stream, server CPU %) |",
        "|---|---|---|",
    ]
    for name, r in results["servers"].items():
        if "skipped" in r:
            lines.append(f"| {name} | {r['skipped']} | |")
            continue
        steps = ", ".join(
            f"{s['streams']}: {s['worst_media_per_wall_s']}, {s['cpu_pct']}%" + ("" if s["held"] else " (not held)") for s in r["steps"]
        )
        top = f"≥ {r['max_streams_held']} (every step held)" if r["all_steps_held"] else str(r["max_streams_held"])
        lines.append(f"| {name} | {top} | {steps} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
