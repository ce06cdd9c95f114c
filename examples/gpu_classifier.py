"""A GPU processor: an ImageNet-sized torch model on every live stream, on a fraction of a GPU.

    python examples/gpu_classifier.py [--fps 2] [--seconds 30] [--data-dir ~/.raylive]

Needs torch (and torchvision for the real model) and a GPU in the Ray cluster; without them it
says so and exits 0, so it can run anywhere. The model is created in `setup()`, inside the actor.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from typing import Any

import numpy as np

import raylive


class Classifier(raylive.Processor):
    def setup(self) -> None:
        import torch

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            from torchvision.models import resnet18

            self.model = resnet18(weights=None).eval().to(self.device)  # weights=None: nothing downloads
        except ImportError:
            self.model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(8), torch.nn.Flatten(), torch.nn.Linear(192, 10)).to(self.device)

    def process(self, frame: np.ndarray, ts: float) -> dict[str, Any]:
        torch = self.torch
        x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            logits = self.model(x)
        return {"class": int(logits.argmax()), "device": self.device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=float, default=2)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    if importlib.util.find_spec("torch") is None:
        print("skipped: torch is not installed")
        return
    import ray

    rl = raylive.connect(data_dir=args.data_dir)
    if ray.cluster_resources().get("GPU", 0) < 0.25:
        print("skipped: no GPU in the Ray cluster")
        return
    handle = rl.attach_all(Classifier, fps=args.fps, rendition="240p", num_cpus=0.5, num_gpus=0.25, name=f"classifier-{int(time.time())}")
    time.sleep(args.seconds)
    print(handle.stats())
    handle.detach()


if __name__ == "__main__":
    sys.exit(main())
