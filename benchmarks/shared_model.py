"""Shared model benchmark: N processors calling one batched model deployment (`raylive.models`,
Ray Serve with `@serve.batch`) against the reference, each processor holding its own copy of the
model and running it on one frame at a time (what processors without a shared model do).

    python benchmarks/shared_model.py                       # N = 1, 4, 16; writes benchmarks/results/latest/shared_model.json
    python benchmarks/shared_model.py --callers 1 4 --seconds 10 --repeats 3

The model is a random-weights MLP over 64x64 RGB frames (12,288 -> 2,048 -> 10, 100 MB of float32
weights: numpy, no download). Each caller is a Ray actor, as a processor host is, calling as fast as
answers come for `--seconds`. Reported per N: frames/s in all, frames per CPU-second of every process
involved (callers and the replica, or the callers with their copies), the mean batch and the
memory the weights take (one copy, or N). On a GPU machine, pass `--gpu` to place the replica there
(the model is numpy, so this measures placement only: give it a torch model for GPU figures).
A run in which a caller failed prints FAILED and exits 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from raylive.models import Model, deploy, model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latest"
SIDE, HIDDEN, CLASSES = 64, 2048, 10


class RandomMlp(Model):
    def setup(self) -> None:
        rng = np.random.default_rng(0)
        self.w1 = rng.standard_normal((SIDE * SIDE * 3, HIDDEN)).astype(np.float32) / 100
        self.w2 = rng.standard_normal((HIDDEN, CLASSES)).astype(np.float32)

    def predict(self, batch: list[np.ndarray]) -> list[int]:
        x = np.stack([b.reshape(-1) for b in batch]).astype(np.float32) / 255
        return [int(i) for i in (np.maximum(x @ self.w1, 0) @ self.w2).argmax(axis=1)]


def _caller_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class Caller:
        """A processor's calls: shared (`model(name)`) or its own copy, one frame at a time."""

        def __init__(self, shared: bool) -> None:
            import os

            os.environ.setdefault("OMP_NUM_THREADS", "1")
            self.frame = np.random.default_rng(1).integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
            if shared:
                self.call = model("bench")
            else:
                own = RandomMlp()
                own.setup()
                self.call = lambda x: own.predict([x])[0]

        def pid(self) -> int:
            import os

            return os.getpid()

        def run(self, seconds: float) -> int:
            n, end = 0, time.monotonic() + seconds
            while time.monotonic() < end:
                self.call(self.frame)
                n += 1
            return n

    return Caller


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def _replica_pid() -> int:
    from ray.util.state import list_actors

    for a in list_actors(filters=[("state", "=", "ALIVE")]):
        if "ServeReplica" in a.class_name and "model-bench" in (a.name or ""):
            return int(a.pid)
    raise RuntimeError("no model replica found")


def measure(n: int, shared: bool, seconds: float, model_handle: Any) -> dict[str, Any]:
    import ray

    callers = [_caller_class().remote(shared) for _ in range(n)]
    pids = ray.get([c.pid.remote() for c in callers]) + ([_replica_pid()] if shared else [])
    ray.get([c.run.remote(0.5) for c in callers])  # warm up
    before_stats = model_handle.stats() if shared else None
    cpu0, t0 = _cpu_s(pids), time.monotonic()
    counts = ray.get([c.run.remote(seconds) for c in callers])
    cpu, wall = _cpu_s(pids) - cpu0, time.monotonic() - t0
    result: dict[str, Any] = {"frames_per_s": sum(counts) / wall, "frames_per_cpu_s": sum(counts) / cpu if cpu else 0.0}
    if shared:
        after = model_handle.stats()
        calls, batches = after["calls"] - before_stats["calls"], after["batches"] - before_stats["batches"]  # type: ignore[index]
        result["mean_batch"] = calls / batches if batches else 0.0
    for c in callers:
        ray.kill(c)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()

    import ray
    from ray import serve

    ray.init(namespace="bench", log_to_driver=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    serve.start(http_options={"location": "NoServer"})
    handle = deploy(RandomMlp, "bench", max_batch_size=16, batch_wait_s=0.002, num_cpus=1, num_gpus=1.0 if args.gpu else 0.0)
    weights_mb = (SIDE * SIDE * 3 * HIDDEN + HIDDEN * CLASSES) * 4 / 1e6
    rows, failed = [], False
    for n in args.callers:
        runs: dict[str, list[dict[str, Any]]] = {"shared": [], "own": []}
        for _ in range(args.repeats):
            for kind in ("shared", "own"):  # interleaved: both see the same machine
                try:
                    runs[kind].append(measure(n, kind == "shared", args.seconds, handle))
                except Exception as exc:  # noqa: BLE001 - a failed caller fails the benchmark, loudly
                    print(f"FAILED: N={n} {kind}: {exc!r}")
                    failed = True
        if failed:
            break
        row: dict[str, Any] = {"callers": n, "weights_mb_shared": weights_mb, "weights_mb_own": weights_mb * n}
        for kind, rs in runs.items():
            for key in ("frames_per_s", "frames_per_cpu_s"):
                values = [r[key] for r in rs]
                row[f"{kind}_{key}"] = statistics.median(values)
                row[f"{kind}_{key}_spread"] = [min(values), max(values)]
        row["mean_batch"] = statistics.median(r["mean_batch"] for r in runs["shared"])
        row["ratio_frames_per_cpu_s"] = row["shared_frames_per_cpu_s"] / row["own_frames_per_cpu_s"]
        rows.append(row)
        print(
            f"N={n:>2}: shared {row['shared_frames_per_s']:7.1f} frames/s, {row['shared_frames_per_cpu_s']:6.1f}/CPU-s,"
            f" batch {row['mean_batch']:.1f} | own copies {row['own_frames_per_s']:7.1f} frames/s,"
            f" {row['own_frames_per_cpu_s']:6.1f}/CPU-s | per CPU-s ratio {row['ratio_frames_per_cpu_s']:.2f}x"
            f" | weights {weights_mb:.0f} MB vs {weights_mb * n:.0f} MB"
        )
    handle.delete()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shared_model.json").write_text(json.dumps({"failed": failed, "rows": rows}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
