"""A processor that makes video: the stream's edges (a Sobel filter in plain numpy) as a rendition
viewers watch, in sync with the stream's audio.

    python examples/edges.py cam1 [--seconds 60] [--data-dir ~/.raylive]

Then play http://HOST:8080/live/cam1/edges.m3u8 (hls.js, Safari, ffplay). Frames the filter has no
time for repeat its latest output, so the rendition keeps real-time pace on any machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import raylive


class Edges(raylive.Processor):
    def process(self, frame: np.ndarray, ts: float) -> np.ndarray:
        gray = frame.mean(axis=2, dtype=np.float32)
        gx = np.abs(gray[1:-1, 2:] - gray[1:-1, :-2])
        gy = np.abs(gray[2:, 1:-1] - gray[:-2, 1:-1])
        edges = np.clip(gx + gy, 0, 255).astype(np.uint8)
        out = np.zeros_like(frame)
        out[1:-1, 1:-1] = edges[..., None]
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stream")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    rl = raylive.connect(data_dir=args.data_dir)
    handle = rl.stream(args.stream).attach(Edges, output=True, rendition="360p", name="edges", num_cpus=1)
    print(f"playing at /live/{args.stream}/edges.m3u8 for {args.seconds:.0f} s")
    try:
        time.sleep(args.seconds)
        print(handle.stats())
    finally:
        handle.detach()


if __name__ == "__main__":
    main()
