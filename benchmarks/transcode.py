"""Ladder benchmark: raylive's transcoder vs the ffmpeg CLI, same input and x264 settings, one run.

For 720p -> 480p+360p and 1080p -> 720p+480p+360p it reports CPU-seconds per minute of video,
the realtime factor (media seconds per wall second) and the ratio to the ffmpeg CLI, for:
  ffmpeg      `ffmpeg -i SRC -filter_complex split,scale... -c:v libx264 ... -f null` (one process)
  in-process  `LadderTranscoder` fed the FLV's tags in 250 ms batches (as the stream actor does)
  ray-actor   the same inside a `StreamTranscoder` Ray actor, batches sent as the ingest sends them
and how many ladders run side by side in real time (in-process, one process each).

    python benchmarks/transcode.py              # writes benchmarks/results/transcode.{json,md}
    python benchmarks/transcode.py --repeats 1 --seconds 10

Both encode with x264 `veryfast`, no B-frames, no scene-cut keyframes, a keyframe every 2 s and
the same bitrates; the CLI is Debian's ffmpeg (its own libx264 build), raylive uses PyAV's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from raylive.runtime import flv  # noqa: E402
from raylive.runtime.avc import sps_from_avcc  # noqa: E402
from raylive.runtime.ingest import IngestTimeline  # noqa: E402
from raylive.runtime.ladder import estimate_cpus, plan_ladder  # noqa: E402
from raylive.runtime.packaging.live import LiveHlsPresentation  # noqa: E402
from raylive.runtime.transcode import LadderTranscoder  # noqa: E402
from raylive.settings import Settings  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results" / "latest"  # scratch; python -m benchmarks keeps dated reports
CATALOGUE = Settings().transcode.renditions
CASES = {
    "720p->480p+360p": ("1280x720", 3000, ["source", "480p", "360p"]),
    "1080p->720p+480p+360p": ("1920x1080", 6000, ["source", "720p", "480p", "360p"]),
}
PRESET = "veryfast"
BATCH_MS = 250


def source(size: str, kbps: int, seconds: int) -> Path:
    path = CACHE / f"ladder_src_{size}_{kbps}k_{seconds}s.flv"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", f"{kbps}k", "-g", "60", "-keyint_min", "60",
             "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", str(path)],
            check=True,
        )  # fmt: skip
    return path


def batches(path: Path) -> list[list[tuple[int, int, bytes]]]:
    """The file's tags grouped into the 250 ms batches the gateway sends the stream actor."""
    out: list[list[tuple[int, int, bytes]]] = [[]]
    start = 0
    for tag in flv.read_file_tags(path.read_bytes()):
        if tag[1] - start >= BATCH_MS and out[-1]:
            out.append([])
            start = tag[1]
        out[-1].append(tag)
    return out


def child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ffmpeg(path: Path, ladder: list[str]) -> dict[str, float]:
    sps = probe_size(path)
    rungs = plan_ladder(ladder, CATALOGUE, *sps)
    split = f"[0:v]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs)))
    chains = ";".join(f"[s{i}]scale={r.width}:{r.height}[o{i}]" for i, r in enumerate(rungs))
    outputs: list[str] = []
    for i, r in enumerate(rungs):
        outputs += ["-map", f"[o{i}]", "-c:v", "libx264", "-preset", PRESET, "-b:v", f"{r.video_kbps}k",
                    "-maxrate", f"{r.video_kbps * 6 // 5}k", "-bufsize", f"{r.video_kbps * 2}k", "-bf", "0",
                    "-g", "1048576", "-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*2)", "-f", "null", "-"]  # fmt: skip
    cpu0, t0 = child_cpu(), time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path), "-filter_complex", f"{split};{chains}", *outputs],
        check=True,
    )
    return {"cpu_s": child_cpu() - cpu0, "wall_s": time.perf_counter() - t0}


def probe_size(path: Path) -> tuple[int, int]:
    for kind, _, body in flv.read_file_tags(path.read_bytes()):
        if kind == 9 and body[0] & 0x0F == 7 and body[1] == 0:
            sps = sps_from_avcc(body[5:])
            return sps.width, sps.height
    raise ValueError("no AVC sequence header")


def transcode_in_process(path: Path, ladder: list[str]) -> dict[str, float]:
    work = batches(path)
    cpu0, t0 = time.process_time(), time.perf_counter()
    timeline, pres = IngestTimeline(), LiveHlsPresentation("bench", 2000, 6, ladder=True)
    tx = LadderTranscoder(ladder, CATALOGUE, "x264", PRESET)
    for batch in work:
        pres.push(timeline.push(batch))
        pres.add_rung_outputs(tx.push(pres.take_ladder_input()))
    pres.add_rung_outputs(tx.finish())
    return {"cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - t0}


def transcode_in_ray_actor(path: Path, ladder: list[str]) -> dict[str, float]:
    import ray

    from raylive.actors.transcoder import StreamTranscoderActor

    settings = Settings().transcode
    settings.preset = PRESET
    settings.max_lag_s = 1e9  # measure, never shed rungs
    actor = StreamTranscoderActor.remote("bench", ladder, settings)  # type: ignore[attr-defined]
    ray.get(actor.ready.remote())
    proc = psutil.Process(ray.get(actor.__ray_call__.remote(lambda self: os.getpid())))
    timeline, pres = IngestTimeline(), LiveHlsPresentation("bench", 2000, 6, ladder=True)
    work = batches(path)
    c0, t0 = proc.cpu_times(), time.perf_counter()
    refs = []
    for batch in work:
        pres.push(timeline.push(batch))
        refs.append(actor.push.remote(pres.take_ladder_input(), time.time()))
    refs.append(actor.finish.remote())
    for r in ray.get(refs):
        pres.add_rung_outputs(r["outputs"])
    wall = time.perf_counter() - t0
    c1 = proc.cpu_times()
    ray.kill(actor)
    return {"cpu_s": (c1.user + c1.system) - (c0.user + c0.system), "wall_s": wall}


def raw_frame_hop(frames: int = 300) -> dict[str, float]:
    """What one-actor-per-rung would pay: sending decoded 720p frames (yuv420p, 1.38 MB) to another actor."""
    import numpy as np
    import ray

    @ray.remote
    class Sink:
        def take(self, frame: np.ndarray) -> int:
            return int(frame[0, 0])

    sink = Sink.remote()  # type: ignore[attr-defined]
    proc = psutil.Process(ray.get(sink.__ray_call__.remote(lambda self: os.getpid())))
    frame = np.zeros((720 * 3 // 2, 1280), np.uint8)
    c0, t0, cpu0 = proc.cpu_times(), time.perf_counter(), time.process_time()
    ray.get([sink.take.remote(frame) for _ in range(frames)])
    wall, c1 = time.perf_counter() - t0, proc.cpu_times()
    cpu = (time.process_time() - cpu0) + (c1.user + c1.system) - (c0.user + c0.system)
    ray.kill(sink)
    return {"ms_per_frame": round(wall * 1000 / frames, 2), "cpu_s_per_min_at_30fps": round(cpu / frames * 30 * 60, 1)}


def _parallel_worker(args: tuple[str, list[str]]) -> float:
    return transcode_in_process(Path(args[0]), args[1])["wall_s"]


def ladders_in_real_time(path: Path, ladder: list[str], media_s: float, limit: int = 8) -> int:
    """The most ladders that finish `media_s` of video within `media_s`, run side by side."""
    best = 0
    for k in range(1, limit + 1):
        with multiprocessing.get_context("spawn").Pool(k) as pool:
            walls = pool.map(_parallel_worker, [(str(path), ladder)] * k)
        if max(walls) > media_s:
            break
        best = k
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20, help="media length of each source")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    if not args.no_ray:
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(include_dashboard=False, log_to_driver=False)
    results: dict[str, object] = {"machine_cores": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0], "preset": PRESET, "cases": {}}
    for case, (size, kbps, ladder) in CASES.items():
        path = source(size, kbps, args.seconds)
        runners = {"ffmpeg": run_ffmpeg, "in-process": transcode_in_process}
        if not args.no_ray:
            runners["ray-actor"] = transcode_in_ray_actor
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in runners}
        for _ in range(args.repeats):
            for name, fn in runners.items():  # interleaved, so noise hits every runner alike
                samples[name].append(fn(path, ladder))
        row: dict[str, object] = {}
        for name, runs in samples.items():
            cpu = statistics.median(r["cpu_s"] for r in runs)
            wall = statistics.median(r["wall_s"] for r in runs)
            row[name] = {"cpu_s_per_min": round(cpu * 60 / args.seconds, 1), "realtime_factor": round(args.seconds / wall, 2)}
        ff = row["ffmpeg"]["cpu_s_per_min"]  # type: ignore[index]
        for name in runners:
            row[name]["vs_ffmpeg"] = round(row[name]["cpu_s_per_min"] / ff, 2)  # type: ignore[index]
        row["ladders_in_real_time"] = ladders_in_real_time(path, ladder, args.seconds)
        w, h = map(int, size.split("x"))
        plan = plan_ladder(ladder, CATALOGUE, w, h)
        row["estimate_cpus"] = estimate_cpus(plan, w, h, 30)
        row["measured_cpus"] = round(row["in-process"]["cpu_s_per_min"] / 60, 2)  # type: ignore[index]
        results["cases"][case] = row  # type: ignore[index]
        print(case, json.dumps(row), flush=True)
    if not args.no_ray:
        results["raw_720p_frame_to_another_actor"] = raw_frame_hop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transcode.json").write_text(json.dumps(results, indent=2))
    table = render(results)
    (RESULTS / "transcode.md").write_text(table)
    print(table)


def render(results: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"Ladder transcoding, x264 {results['preset']}, {results['machine_cores']} cores "
        f"(load {results['load_avg_at_start']:.1f} at start); medians of repeated interleaved runs.",
        "",
        "| case | runner | CPU-s per min of video | realtime factor | CPU vs ffmpeg CLI |",
        "|---|---|---|---|---|",
    ]
    for case, row in results["cases"].items():
        for name in ("ffmpeg", "in-process", "ray-actor"):
            if name in row:
                r = row[name]
                lines.append(f"| {case} | {name} | {r['cpu_s_per_min']} | {r['realtime_factor']} | {r['vs_ffmpeg']}x |")
    lines.append("")
    for case, row in results["cases"].items():
        lines.append(
            f"- {case}: {row['ladders_in_real_time']} ladder(s) in real time side by side; "
            f"{row['measured_cpus']} cores each measured, {row['estimate_cpus']} estimated (the actor's Ray CPU request)"
        )
    hop = results.get("raw_720p_frame_to_another_actor")
    if hop:
        lines.append(
            f"- A decoded 720p frame sent to another Ray actor (what one actor per rung would need): {hop['ms_per_frame']} ms, "
            f"{hop['cpu_s_per_min_at_30fps']} CPU-s per minute at 30 fps, per rung"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
