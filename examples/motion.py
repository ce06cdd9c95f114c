"""Scene-change / motion detector in plain numpy, run as a Ray actor on a live stream.

    python examples/motion.py cam1 [--fps 5] [--seconds 30] [--data-dir ~/.raylive]

Each sampled frame is compared with the previous one; the mean absolute difference goes to
ClickHouse (`processor_events`) and to the WebSocket, and the script prints the biggest changes.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import raylive


class Motion(raylive.Processor):
    def setup(self) -> None:
        self.previous: np.ndarray | None = None

    def process(self, frame: np.ndarray, ts: float) -> dict[str, Any]:
        gray = frame.mean(axis=2, dtype=np.float32)
        change = 0.0 if self.previous is None else float(np.abs(gray - self.previous).mean())
        self.previous = gray
        return {"motion": change, "scene_change": change > 30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stream")
    ap.add_argument("--fps", type=float, default=5)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    rl = raylive.connect(data_dir=args.data_dir)
    name = f"motion-{int(time.time())}"
    handle = rl.stream(args.stream).attach(Motion, fps=args.fps, rendition="240p", num_cpus=0.25, name=name)
    time.sleep(args.seconds)
    handle.detach()
    rows = rl.sql(
        "SELECT frame_ts, JSONExtractFloat(payload, 'motion') AS motion FROM processor_events "
        "WHERE processor = {p:String} ORDER BY motion DESC LIMIT 5",
        p=name,
    )
    print(f"{len(rows)} biggest changes on {args.stream}:")
    for row in rows:
        print(f"  t={row['frame_ts']:.2f}s motion={row['motion']:.1f}")


if __name__ == "__main__":
    main()
