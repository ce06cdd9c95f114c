"""Latency benchmark: publish -> first playable playlist, and frame -> playlist, raylive vs nginx-rtmp.

One 720p30 2.5 Mb/s publisher (`ffmpeg -re -stream_loop -1 -c copy`, 2 s GOP) per repeat; both
servers cut 2 s segments at keyframes. The playlist is polled every 50 ms. For each segment,
frame -> playlist latency is the time from when its last frame was due to be sent (publisher
start + the media time where the segment ends) to when the segment is listed; it includes
ffmpeg's start-up (the same for both servers), not the player's buffering.

    python benchmarks/latency.py                 # writes benchmarks/results/latency.{json,md}
    python benchmarks/latency.py --repeats 2 --seconds 12
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import RESULTS, Server, http_get, source_file, start_nginx, start_raylive  # noqa: E402

POLL_S = 0.05
SEGMENT_RE = re.compile(r"#EXTINF:([\d.]+),[^\n]*\n(?:#[^\n]*\n)*([^#\s][^\n]*)")


def one_publish(server: Server, index: int, src: Path, seconds: float) -> dict[str, object]:
    t0 = time.monotonic()
    pub = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(src), "-c", "copy",
         "-f", "flv", server.publish_url(index)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    media_end: dict[str, float] = {}  # segment URI -> media time at its end, since the publish started
    listed: dict[str, float] = {}  # segment URI -> when it was first listed
    total = 0.0
    first_playable = None
    try:
        while time.monotonic() - t0 < seconds:
            status, text = http_get(server.playlist_url(index))
            now = time.monotonic()
            if status == 200:
                for duration, uri in SEGMENT_RE.findall(text):
                    if uri not in media_end:
                        total += float(duration)
                        media_end[uri] = total
                        listed[uri] = now - t0
                        first_playable = first_playable if first_playable is not None else now - t0
            time.sleep(POLL_S)
    finally:
        pub.terminate()
        pub.wait(10)
    # Steady state: the first segment's wait (actor start-up, connection) is first_playable_s.
    lat = [listed[u] - media_end[u] for u in list(media_end)[1:]]
    return {"first_playable_s": first_playable, "segment_latency_s": lat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each publish is watched")
    args = ap.parse_args()
    src = source_file()
    results: dict[str, object] = {"machine_cores": os.cpu_count(), "repeats": args.repeats, "servers": {}}
    with tempfile.TemporaryDirectory(prefix="raylive-latency-") as tmp:
        for name, starter in (("raylive", lambda w: start_raylive(w, args.repeats)), ("nginx-rtmp", start_nginx)):
            work = Path(tmp) / name
            work.mkdir()
            server = starter(work)
            if server is None:
                results["servers"][name] = {"skipped": "nginx with libnginx-mod-rtmp not installed"}  # type: ignore[index]
                continue
            try:
                runs = [one_publish(server, i, src, args.seconds) for i in range(args.repeats)]
            finally:
                server.stop()
            firsts = [r["first_playable_s"] for r in runs if r["first_playable_s"] is not None]
            lats = sorted(x for r in runs for x in r["segment_latency_s"])  # type: ignore[attr-defined]
            row = {
                "first_playable_s_median": round(statistics.median(firsts), 2) if firsts else None,
                "first_playable_s_runs": [round(x, 2) for x in firsts],  # type: ignore[arg-type]
                "frame_to_playlist_s_median": round(statistics.median(lats), 3) if lats else None,
                "frame_to_playlist_s_p90": round(lats[int(0.9 * (len(lats) - 1))], 3) if lats else None,
                "segments_timed": len(lats),
            }
            results["servers"][name] = row  # type: ignore[index]
            print(name, json.dumps(row), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(results, indent=2))
    table = render(results)
    (RESULTS / "latency.md").write_text(table)
    print(table)


def render(results: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"Latency: one 720p30 passthrough publish, {results['repeats']} repeats, 2 s segments; medians.",
        "",
        "| server | publish -> first playable s | frame -> playlist s (median) | p90 s | segments timed |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["servers"].items():
        if "skipped" in r:
            lines.append(f"| {name} | {r['skipped']} | | | |")
            continue
        lines.append(
            f"| {name} | {r['first_playable_s_median']} | {r['frame_to_playlist_s_median']} | "
            f"{r['frame_to_playlist_s_p90']} | {r['segments_timed']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
