"""Latency benchmark: publish -> first playable playlist, and frame -> playlist, raylive vs nginx-rtmp.

One 720p30 2.5 Mb/s H.264 + AAC stream (2 s GOP) per repeat, published by PyAV's RTMP muxer
(ffmpeg's RTMP client) in real time, so that the wall time each frame is sent is known; both servers
cut 2 s segments at keyframes. The playlist is polled every 50 ms.

- publish -> first playable: from opening the RTMP connection to the first listed segment.
- frame -> playlist: for each later segment, from sending its last frame to its being listed
  (what a segment costs the server: cut, package, store, publish the playlist), not the
  player's buffering.

    python benchmarks/latency.py                 # writes benchmarks/results/latest/latency.{json,md}
    python benchmarks/latency.py --repeats 2 --seconds 12
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import SKIPPED, Server, each_server, http_get, save_results, source_file  # noqa: E402

POLL_S = 0.05
SEGMENT_RE = re.compile(r"#EXTINF:([\d.]+),[^\n]*\n(?:#[^\n]*\n)*([^#\s][^\n]*)")


def paced_publish(url: str, src: Path, seconds: float, sent: dict[int, float], opened: list[float]) -> None:
    """Remux `src` to `url` in real time; `sent` gets each video packet's DTS (ms) -> wall time sent."""
    with av.open(str(src)) as inp:
        video, audio = inp.streams.video[0], inp.streams.audio[0]
        with av.open(url, "w", format="flv") as out:
            opened.append(time.monotonic())  # the publish handshake is done
            streams = {video.index: out.add_stream_from_template(video), audio.index: out.add_stream_from_template(audio)}
            start = time.monotonic()
            for pkt in inp.demux(video, audio):
                if pkt.dts is None:
                    continue
                at = float(pkt.dts * pkt.time_base)
                if at > seconds:
                    break
                delay = start + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                is_video = pkt.stream.index == video.index
                pkt.stream = streams[pkt.stream.index]
                out.mux(pkt)
                if is_video:
                    sent[round(at * 1000)] = time.monotonic()


def one_publish(server: Server, index: int, src: Path, seconds: float) -> dict[str, object]:
    sent: dict[int, float] = {}  # video DTS ms -> wall time sent
    opened: list[float] = []
    t0 = time.monotonic()
    pub = threading.Thread(target=paced_publish, args=(server.publish_url(index), src, seconds, sent, opened), daemon=True)
    pub.start()
    media_end: dict[str, float] = {}  # segment URI -> media time (s) where it ends
    listed: dict[str, float] = {}  # segment URI -> when it was first listed
    total = 0.0
    while pub.is_alive() or time.monotonic() - t0 < 3:
        status, text = http_get(server.playlist_url(index))
        now = time.monotonic()
        if status == 200:
            for duration, uri in SEGMENT_RE.findall(text):
                if uri not in media_end:
                    total += float(duration)
                    media_end[uri] = total
                    listed[uri] = now
        time.sleep(POLL_S)
    pub.join(10)
    uris = list(media_end)
    first = listed[uris[0]] - t0 if uris else None
    lat = []
    for uri in uris[1:]:  # steady state: the first segment's wait is first_playable_s
        # The segment's last frame: the latest video packet sent before the media time it ends at.
        end_ms = round(media_end[uri] * 1000)
        last = max((dts for dts in sent if dts < end_ms - 1), default=None)
        if last is not None:
            lat.append(listed[uri] - sent[last])
    return {"first_playable_s": first, "segment_latency_s": lat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=18.0, help="media published per repeat (the source is 20 s)")
    args = ap.parse_args()
    src = source_file()
    results: dict[str, object] = {"machine_cores": os.cpu_count(), "repeats": args.repeats, "servers": {}}
    with tempfile.TemporaryDirectory(prefix="raylive-latency-") as tmp:
        for name, server in each_server(Path(tmp), args.repeats):
            if server is None:
                results["servers"][name] = SKIPPED  # type: ignore[index]
                continue
            runs = [one_publish(server, i, src, args.seconds) for i in range(args.repeats)]
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
    save_results("latency", results, render(results))


def render(results: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"Latency: one 720p30 passthrough publish (PyAV, real time), {results['repeats']} repeats, 2 s segments; medians.",
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
