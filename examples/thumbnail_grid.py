"""A contact sheet of every live stream: one frame each, pulled as numpy, tiled into one JPEG.

python examples/thumbnail_grid.py grid.jpg [--width 320] [--data-dir ~/.raylive]
"""

from __future__ import annotations

import argparse

import av
import numpy as np

import raylive


def tile(frames: list[np.ndarray], columns: int = 4) -> np.ndarray:
    h, w = frames[0].shape[:2]
    rows = -(-len(frames) // columns)
    sheet = np.zeros((rows * h, min(columns, len(frames)) * w, 3), np.uint8)
    for i, f in enumerate(frames):
        f = f[:h, :w]
        sheet[(i // columns) * h : (i // columns) * h + f.shape[0], (i % columns) * w : (i % columns) * w + f.shape[1]] = f
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--rendition", default="240p")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    rl = raylive.connect(data_dir=args.data_dir)
    frames, names = [], []
    for s in rl.streams():
        for _, frame in rl.stream(s.name).frames(rendition=args.rendition, fps=1, timeout_s=15):
            frames.append(frame)
            names.append(s.name)
            break
    if not frames:
        raise SystemExit("no live stream")
    sheet = tile(frames)
    sheet = sheet[: sheet.shape[0] // 2 * 2, : sheet.shape[1] // 2 * 2]
    with av.open(args.out, "w", format="image2") as out:
        stream = out.add_stream("mjpeg")
        stream.width, stream.height, stream.pix_fmt = sheet.shape[1], sheet.shape[0], "yuvj420p"
        for packet in stream.encode(av.VideoFrame.from_ndarray(sheet, format="rgb24").reformat(format="yuvj420p")):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    print(f"{args.out}: {', '.join(names)}")


if __name__ == "__main__":
    main()
