"""One prepared script for a GPU machine (#20): NVDEC decoding, NVENC encoding, a processor with a
GPU share on a live stream, and the shared model placed on the GPU. Prints one JSON object; each
check says what it measured or why it could not run. Without a GPU every check says so and the
script exits 0 (the CPU paths are what the test suite covers).

    python benchmarks/gpu_check.py                 # ≈ 2 min; needs ffmpeg and `pip install -e .`
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _clip(tmp: Path, seconds: int = 10) -> Path:
    path = tmp / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-bf", "0", str(path)],
        check=True,
    )  # fmt: skip
    return path


def decode(clip: Path) -> dict[str, Any]:
    """Frames/s decoding the 720p clip with h264_cuvid (NVDEC) and with the CPU's h264."""
    import av

    out: dict[str, Any] = {}
    for name in ("h264_cuvid", "h264"):
        try:
            with av.open(str(clip)) as c:
                stream = c.streams.video[0]
                ctx = av.codec.CodecContext.create(name, "r")
                ctx.extradata = stream.codec_context.extradata
                start, frames = time.perf_counter(), 0
                for packet in c.demux(stream):
                    if packet.size:  # (the demuxer's last packet is an empty one: the flush below)
                        frames += len(ctx.decode(packet))
                frames += len(ctx.decode(None))
                out[name] = {"frames": frames, "fps": round(frames / (time.perf_counter() - start), 1)}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            out[name] = {"failed": repr(exc)}
    return out


def encode() -> dict[str, Any]:
    """Whether h264_nvenc opens and encodes 300 720p frames, and how fast."""
    import av
    import numpy as np

    from raylive.runtime.ladder import PlannedRung
    from raylive.runtime.transcode import open_encoder

    try:
        enc = open_encoder("h264_nvenc", PlannedRung("720p", 1280, 720, 3000), 30, "veryfast")
        frame = av.VideoFrame.from_ndarray(np.zeros((720, 1280, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        start, packets = time.perf_counter(), 0
        for i in range(300):
            frame.pts = i * 33
            packets += len(enc.encode(frame))
        packets += len(enc.encode(None))
        return {"packets": packets, "fps": round(300 / (time.perf_counter() - start), 1)}
    except Exception as exc:  # noqa: BLE001
        return {"failed": repr(exc)}


def live(tmp: Path) -> dict[str, Any]:
    """`raylive up`, one published stream, a processor with num_gpus=0.25 making video (its host
    decodes with NVDEC), and the shared-model benchmark's model placed on the GPU."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    data = tmp / "data"
    up = subprocess.Popen([sys.executable, "-m", "raylive.cli", "up", "--data-dir", str(data)], env=env)
    try:
        for _ in range(120):
            if (data / "raylive.json").exists():
                break
            time.sleep(1)
        record = json.loads((data / "raylive.json").read_text())
        cli = [sys.executable, "-m", "raylive.cli", "keys", "create", "gpu1", "--data-dir", str(data)]
        created = subprocess.run(cli, capture_output=True, text=True, env=env).stdout
        key = next(line.split()[1] for line in created.splitlines() if line.startswith("key:"))
        ff = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
             "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-c:a", "aac",
             "-f", "flv", f"rtmp://127.0.0.1:{record.get('rtmp_port', 1935)}/live/{key}"],
        )  # fmt: skip
        import raylive
        from benchmarks.latency import Identity

        rl = raylive.connect(data_dir=data)
        time.sleep(8)
        handle = rl.stream("gpu1").attach(Identity, output=True, name="gpu_identity", num_cpus=0.5, num_gpus=0.25)
        time.sleep(20)
        stats = handle.stats()
        handle.detach()
        ff.kill()
        return {"processor": stats}
    except Exception as exc:  # noqa: BLE001
        return {"failed": repr(exc)}
    finally:
        up.terminate()
        up.wait(60)


def main() -> int:
    import shutil

    report: dict[str, Any] = {"nvidia_smi": shutil.which("nvidia-smi") is not None}
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(Path(tmp))
        report["decode"] = decode(clip)
        report["encode_nvenc"] = encode()
        if report["nvidia_smi"]:
            report["live"] = live(Path(tmp))
            model = subprocess.run(
                [sys.executable, str(Path(__file__).parent / "shared_model.py"), "--gpu", "--seconds", "5", "--repeats", "1"],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            report["shared_model_gpu"] = model.stdout.strip().splitlines()[-3:] or model.stderr[-2000:]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
