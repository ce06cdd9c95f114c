"""Latency benchmark: raylive's LL-HLS and LL-DASH beside nginx-rtmp's HLS and DASH, in one run.

One 720p30 2.5 Mb/s H.264 + AAC stream (2 s GOP), passthrough, per repeat, published by PyAV's RTMP
muxer in real time so that the wall time each frame is sent is known.

- publish → first playable: from the RTMP connection to the first playable media (raylive: the
  multivariant playlist and a part listed; nginx-rtmp: a segment listed).
- frame → listed: for each part (raylive, read with LL-HLS blocking reloads as hls.js does) or
  segment (nginx-rtmp, polled every 50 ms), from sending its last frame to its being listed.
- part written → held request answered: the stream actor publishes each playlist it writes
  (`rl:playlists:NAME`); this client hears the same message and times the held request's answer.
- processor (`--processor`, raylive only): a processor that makes video (returns each frame as it
  is, `output=True`) on one more publish; for each part listed in both its rendition and the
  source (the same names), how much later it was listed in the processor's: the extra latency.
- players: hls.js (low-latency mode with catch-up; nginx-rtmp: its plain HLS) and dash.js (low
  latency; nginx-rtmp: its DASH) in Debian Chromium for `--player-s` each: wall clock minus the
  on-screen frame's time (hls.js `playingDate`, i.e. PROGRAM-DATE-TIME; dash.js's own live latency).

    python benchmarks/latency.py                 # writes benchmarks/results/latest/latency.{json,md}
    python benchmarks/latency.py --repeats 2 --seconds 12 --player-s 20 --processor
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
import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import SKIPPED, Server, each_server, http_get, loop_publisher, save_results, source_file  # noqa: E402
from raylive.api import Processor  # noqa: E402
from raylive.runtime.packaging.hls import playlist_edge  # noqa: E402
from tests.e2e.browser import browser_page, page_url, players_server  # noqa: E402

POLL_S = 0.05
PLAYER_STREAM = 9  # the players watch this stream index; the repeats publish 0, 1, ...
SEGMENT_RE = re.compile(r"#EXTINF:([\d.]+),[^\n]*\n(?:#[^\n]*\n)*([^#\s][^\n]*)")
PART_RE = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"')


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


def _frame_delay(sent: dict[int, float], end_s: float, listed: float) -> float | None:
    """From sending the last frame before media time `end_s` to `listed`."""
    end_ms = round(end_s * 1000)
    last = max((dts for dts in sent if dts < end_ms - 1), default=None)
    return None if last is None else listed - sent[last]


def raylive_publish(server: Server, index: int, src: Path, seconds: float) -> dict[str, object]:
    """One publish, read as an LL-HLS client reads it: blocking reloads for each next part."""
    sent: dict[int, float] = {}
    opened: list[float] = []
    t0 = time.monotonic()
    pub = threading.Thread(target=paced_publish, args=(server.publish_url(index), src, seconds, sent, opened), daemon=True)
    pub.start()
    url = server.playlist_url(index)
    master = url.rsplit("/", 2)[0] + "/index.m3u8"
    heard: dict[tuple[int, int], float] = {}  # playlist edge -> when its message reached this client
    stop = threading.Event()
    threading.Thread(target=_listen, args=(server, index, heard, stop), daemon=True).start()
    first: float | None = None
    parts_end = 0.0  # media time where the parts read so far end
    seen: set[str] = set()
    frame_to_part: list[float] = []
    answer_delay: list[float] = []
    with httpx.Client(timeout=10) as http:
        while first is None and time.monotonic() - t0 < 30:
            r = http.get(url)
            if r.status_code == 200 and "#EXT-X-PART:" in r.text and http.get(master).status_code == 200:
                first = time.monotonic() - t0
            else:
                time.sleep(POLL_S)
        text = http.get(url).text
        edge = playlist_edge(text)
        while pub.is_alive() and not edge.ended:
            r = http.get(f"{url}?_HLS_msn={edge.next_msn}&_HLS_part={edge.open_parts}")
            answered = time.monotonic()
            if r.status_code != 200:
                continue
            for duration, uri in PART_RE.findall(r.text):
                if uri in seen:
                    continue
                seen.add(uri)
                parts_end += float(duration)
                if len(seen) > 1 and (delay := _frame_delay(sent, parts_end, answered)) is not None:
                    frame_to_part.append(delay)
            edge = playlist_edge(r.text)
            published = heard.get((edge.next_msn, edge.open_parts))
            if published is not None:
                answer_delay.append(answered - published)
    stop.set()
    pub.join(10)
    return {"first_playable_s": first, "frame_to_listed_s": frame_to_part, "part_written_to_answered_s": answer_delay}


class Identity(Processor):
    """A processor that makes video: each frame as it came (what the processed rendition costs in
    delay beyond the processor's own work). Pickled by value (this module runs as __main__)."""

    def process(self, frame: object, ts: float) -> object:
        return frame


def _listed_parts(url: str, done: threading.Event, listed: dict[str, float]) -> None:
    """Read a media playlist as an LL-HLS client does (blocking reloads for each next part): when
    each part URI was first listed."""
    with httpx.Client(timeout=10) as http:
        while not done.is_set():
            r = http.get(url)
            if r.status_code == 200 and "#EXT-X-PART:" in r.text:
                break
            time.sleep(POLL_S)
        edge = playlist_edge(r.text)
        while not done.is_set() and not edge.ended:
            r = http.get(f"{url}?_HLS_msn={edge.next_msn}&_HLS_part={edge.open_parts}")
            answered = time.monotonic()
            if r.status_code != 200:
                continue
            for _, uri in PART_RE.findall(r.text):
                listed.setdefault(uri, answered)
            edge = playlist_edge(r.text)


def processor_delay(server: Server, index: int, src: Path, seconds: float) -> dict[str, object]:
    """One publish with an `Identity` processor making video: its parts' listing after the source's."""
    import ray

    import raylive

    sent: dict[int, float] = {}
    pub = threading.Thread(target=paced_publish, args=(server.publish_url(index), src, seconds, sent, []), daemon=True)
    pub.start()
    source_url = server.playlist_url(index)
    view_url = source_url.replace("/source/", "/identity/")
    rl = raylive.connect(data_dir=server.data_dir)
    done = threading.Event()
    listed: dict[str, dict[str, float]] = {"source": {}, "identity": {}}
    urls = {"source": source_url, "identity": view_url}
    readers = [threading.Thread(target=_listed_parts, args=(u, done, listed[k]), daemon=True) for k, u in urls.items()]
    readers[0].start()
    deadline = time.monotonic() + 30
    while not listed["source"] and time.monotonic() < deadline:
        time.sleep(POLL_S)
    handle = rl.stream(f"bench{index}").attach(Identity, output=True, name="identity", num_cpus=0.5)
    readers[1].start()
    stats: list[dict[str, object]] = []
    while pub.is_alive():  # its actor goes with the stream: read its figures while it lives
        stats = handle.stats() or stats
        time.sleep(1)
    time.sleep(2)
    handle.detach()
    done.set()
    ray.shutdown()
    view = listed["identity"]
    first_segment = min((u.split(".")[0] for u in view), default="")  # begun at the attach: partial, skipped
    extra = [view[u] - t for u, t in listed["source"].items() if u in view and u.split(".")[0] != first_segment]
    return {
        "processor_extra_s_p50": _pct(extra, 0.5),
        "processor_extra_s_p99": _pct(extra, 0.99),
        "parts_compared": len(extra),
        "processor_stats": stats[0] if stats else {},
    }


def _listen(server: Server, index: int, heard: dict[tuple[int, int], float], stop: threading.Event) -> None:
    """The media Redis's playlist messages for this stream, as a playback replica hears them."""
    assert server.data_dir is not None
    record = json.loads((server.data_dir / "raylive.json").read_text())
    pubsub = redis.Redis.from_url(record["media_redis_url"]).pubsub()
    pubsub.subscribe(f"rl:playlists:bench{index}")
    while not stop.is_set():
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            path, _, text = message["data"].partition(b"\n")
            if path == b"source/index.m3u8":
                edge = playlist_edge(text.decode())
                heard.setdefault((edge.next_msn, edge.open_parts), time.monotonic())


def nginx_publish(server: Server, index: int, src: Path, seconds: float) -> dict[str, object]:
    """nginx-rtmp has segments only: its playlist polled every 50 ms."""
    sent: dict[int, float] = {}
    opened: list[float] = []
    t0 = time.monotonic()
    pub = threading.Thread(target=paced_publish, args=(server.publish_url(index), src, seconds, sent, opened), daemon=True)
    pub.start()
    media_end: dict[str, float] = {}
    listed: dict[str, float] = {}
    total = 0.0
    while pub.is_alive() or time.monotonic() - t0 < 3:
        status, text = http_get(server.playlist_url(index))
        now = time.monotonic()
        if status == 200:
            for duration, uri in SEGMENT_RE.findall(text):
                if uri not in media_end:
                    total += float(duration)
                    media_end[uri], listed[uri] = total, now
        time.sleep(POLL_S)
    pub.join(10)
    uris = list(media_end)
    first = listed[uris[0]] - t0 if uris else None
    lat = [d for uri in uris[1:] if (d := _frame_delay(sent, media_end[uri], listed[uri])) is not None]
    return {"first_playable_s": first, "frame_to_listed_s": lat, "part_written_to_answered_s": []}


def players(server: Server, name: str, src: Path, seconds: float, origin: str) -> dict[str, object]:
    """hls.js and dash.js watching a looping publisher for `seconds` each (after 8 s to settle), one
    after the other: the first hls.js from the stream's first playlist on, then a viewer of it running."""
    index = PLAYER_STREAM
    pub = loop_publisher(src, server.publish_url(index))
    hls_url = server.playlist_url(index).rsplit("/", 2)[0] + "/index.m3u8" if name == "raylive" else server.playlist_url(index)
    dash_url = hls_url.replace("index.m3u8", "index.mpd") if name == "raylive" or server.dash_url is None else server.dash_url(index)
    out: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 30
        while http_get(hls_url)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        hls_cfg = {"lowLatencyMode": True, "maxLiveSyncPlaybackRate": 1.5} if name == "raylive" else {}
        # The first joins as the stream starts (less media exists than it wants to buffer: hls.js
        # stalls once and keeps 1 s more latency for its session); the others join it running.
        cfgs = {
            "hls.js joined at the start": ("hls", hls_url, hls_cfg),
            "hls.js": ("hls", hls_url, hls_cfg),
            "dash.js": ("dash", dash_url, {"streaming": {"delay": {"liveDelay": 1.2}, "liveCatchup": {"enabled": True}}}),
        }
        for label, (player, url, cfg) in cfgs.items():
            with browser_page(page_url(origin, player, url, cfg)) as page:
                try:
                    page.wait_for_function("document.getElementById('v').currentTime > 2 || window.errors.length > 0", timeout=45_000)
                except Exception as exc:  # noqa: BLE001 - the figure is a failure, not a number
                    out[label] = {"failed": f"did not play: {type(exc).__name__}"}
                    continue
                page.wait_for_timeout(8_000)
                page.evaluate("window.lat = []; window.edge = []")
                page.wait_for_timeout(int(seconds * 1000))
                state = page.evaluate("({lat: window.lat, edge: window.edge || [], errors: window.errors, stalls: window.stalls})")
            measure = "wall clock - on-screen frame's time"
            lat = sorted(state["lat"])
            if not lat and state["edge"]:  # nginx-rtmp's HLS has no PROGRAM-DATE-TIME: hls.js's edge distance, a lower bound
                lat, measure = sorted(state["edge"]), "hls.js latency (to the playlist's edge; a lower bound)"
            # dash.js on an MPD without UTCTiming fails to reach its default (internet) time servers and
            # goes on with the local clock, which is the server's here: not a playback failure.
            errors = [e for e in state["errors"] if "synchronize client and server time" not in e]
            if errors or len(lat) < 4:
                out[label] = {"failed": f"errors {errors[:3]}, {len(lat)} samples"}
                continue
            out[label] = {
                "p50_s": round(statistics.median(lat), 3),
                "p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3),
                "stalls": len(state["stalls"]),
                "samples": len(lat),
                "measure": measure,
            }
    finally:
        pub.terminate()
        pub.wait(10)
    return out


def _pct(values: list[float], q: float) -> float | None:
    v = sorted(values)
    return round(v[int(q * (len(v) - 1))], 3) if v else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=18.0, help="media published per repeat (the source is 20 s)")
    ap.add_argument("--player-s", type=float, default=60.0, help="latency sampled per player")
    ap.add_argument("--processor", action="store_true", help="also a processor's rendition's extra latency (raylive)")
    args = ap.parse_args()
    src = source_file()
    results: dict[str, object] = {"machine_cores": os.cpu_count(), "repeats": args.repeats, "player_s": args.player_s, "servers": {}}
    with tempfile.TemporaryDirectory(prefix="raylive-latency-") as tmp, players_server(Path(tmp) / "players") as origin:
        for name, server in each_server(Path(tmp), PLAYER_STREAM + 1):
            if server is None:
                results["servers"][name] = SKIPPED  # type: ignore[index]
                continue
            one = raylive_publish if name == "raylive" else nginx_publish
            runs = [one(server, i, src, args.seconds) for i in range(args.repeats)]
            firsts = [r["first_playable_s"] for r in runs if r["first_playable_s"] is not None]
            lats = [x for r in runs for x in r["frame_to_listed_s"]]  # type: ignore[attr-defined]
            answers = [x for r in runs for x in r["part_written_to_answered_s"]]  # type: ignore[attr-defined]
            row: dict[str, object] = {
                "first_playable_s_median": round(statistics.median(firsts), 2) if len(firsts) == args.repeats else None,
                "first_playable_s_runs": [round(x, 2) for x in firsts],  # type: ignore[arg-type]
                "frame_to_listed_s_p50": _pct(lats, 0.5),
                "frame_to_listed_s_p99": _pct(lats, 0.99),
                "listed_timed": len(lats),
                "part_written_to_answered_s_p50": _pct(answers, 0.5),
                "part_written_to_answered_s_p99": _pct(answers, 0.99),
                "players": players(server, name, src, args.player_s, origin),
            }
            if args.processor and name == "raylive":
                row["processor"] = processor_delay(server, args.repeats, src, args.seconds)
                print("processor", json.dumps(row["processor"]), flush=True)
            if len(firsts) != args.repeats:
                row["failed"] = f"{args.repeats - len(firsts)} publish(es) never became playable"
            results["servers"][name] = row  # type: ignore[index]
            print(name, json.dumps(row), flush=True)
    save_results("latency", results, render(results))


def render(results: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"Latency: one 720p30 passthrough publish (PyAV, real time, 2 s GOP), {results['repeats']} repeats; raylive with LL-HLS "
        f"parts of 0.2 s; players sampled {results['player_s']:.0f} s each in Chromium.",
        "",
        "| server | publish → first playable s | frame → listed p50 / p99 s | part written → held request answered p50 / p99 s | "
        "hls.js latency p50 / p95 s | dash.js latency p50 / p95 s |",
        "|---|---|---|---|---|---|",
    ]

    def player(r: dict, label: str) -> str:  # type: ignore[type-arg]
        p = r.get("players", {}).get(label, {})
        if "failed" in p:
            return str(p["failed"])
        bound = " (edge distance only: a lower bound)" if "lower bound" in p.get("measure", "") else ""
        return f"{p.get('p50_s')} / {p.get('p95_s')} ({p.get('stalls')} stalls){bound}"

    for name, r in results["servers"].items():
        if "skipped" in r:
            lines.append(f"| {name} | {r['skipped']} | | | | |")
            continue
        first = r["failed"] if "failed" in r else r["first_playable_s_median"]
        answered = (
            f"{r['part_written_to_answered_s_p50']} / {r['part_written_to_answered_s_p99']}" if r["part_written_to_answered_s_p50"] else "—"
        )
        lines.append(
            f"| {name} | {first} | {r['frame_to_listed_s_p50']} / {r['frame_to_listed_s_p99']} ({r['listed_timed']}) | {answered} | "
            f"{player(r, 'hls.js')} | {player(r, 'dash.js')} |"
        )
    lines += ["", "raylive lists parts (frame → part listed), nginx-rtmp segments (frame → segment listed)."]
    lines += [
        f"hls.js joined at the stream's start, {name}: {player(r, 'hls.js joined at the start')}."
        for name, r in results["servers"].items()
        if "players" in r
    ]
    proc = results["servers"].get("raylive", {}).get("processor")
    if proc:
        lines += [
            "",
            f"A processor that makes video (each frame returned as it came): its parts were listed "
            f"{proc['processor_extra_s_p50']} s (p50) / {proc['processor_extra_s_p99']} s (p99) after the source's same parts "
            f"({proc['parts_compared']} parts).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
