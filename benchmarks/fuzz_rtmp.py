"""Mutation fuzzing of raylive's RTMP parsing (chunk stream, AMF0, session, FLV/ingest).

Seeds are the real ffmpeg captures in tests/fixtures; each input flips, inserts, deletes or
duplicates a few bytes after the handshake and is fed through the sans-IO session in random read
sizes. Anything other than a protocol error (ChunkError, RtmpProtocolError, Amf0Error) or a refused
media error counts as a crash and is saved. Reports inputs/s, crashes and peak RSS.

    python benchmarks/fuzz_rtmp.py                     # 1,000,000 inputs on all cores
    python benchmarks/fuzz_rtmp.py --inputs 100000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from raylive.runtime import flv  # noqa: E402
from raylive.runtime.ingest import IngestTimeline, UnsupportedMedia  # noqa: E402
from raylive.runtime.rtmp import amf0  # noqa: E402
from raylive.runtime.rtmp.chunk import ChunkError, ChunkLimits  # noqa: E402
from raylive.runtime.rtmp.session import MediaReceived, PublishRequested, RtmpProtocolError, RtmpServerSession  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
RESULTS = Path(__file__).resolve().parent / "results" / "latest"  # scratch; python -m benchmarks keeps dated reports
HANDSHAKE = 1 + 2 * 1536
EXPECTED = (ChunkError, RtmpProtocolError, amf0.Amf0Error, UnsupportedMedia, flv.FlvError)
PREFIX = 8192  # bytes after the handshake: covers connect..publish and the first media


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed[: HANDSHAKE + rng.randint(16, PREFIX)])
    for _ in range(rng.randint(1, 6)):
        if len(data) <= HANDSHAKE + 1:
            break
        pos = rng.randint(HANDSHAKE, len(data) - 1)
        op = rng.random()
        if op < 0.5:
            data[pos] = rng.randint(0, 255)
        elif op < 0.7:
            data[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif op < 0.85:
            del data[pos : pos + rng.randint(1, 32)]
        else:
            data[pos:pos] = data[pos : pos + rng.randint(1, 256)]
    return bytes(data)


def run_one(data: bytes, rng: random.Random) -> None:
    session = RtmpServerSession(ChunkLimits(max_message_size=1 << 20))
    timeline = IngestTimeline()
    pos = 0
    try:
        while pos < len(data):
            step = rng.randint(1, 2048)
            pending = session.feed(data[pos : pos + step])
            pos += step
            while pending:
                ev = pending.pop(0)
                if isinstance(ev, PublishRequested):
                    pending = session.accept_publish() + pending
                elif isinstance(ev, MediaReceived):
                    m = ev.message
                    timeline.push([(m.type_id, m.timestamp, m.payload)])
            session.data_to_send()
    except EXPECTED:
        pass


def worker(args: tuple[int, int, list[bytes]]) -> dict[str, object]:
    count, seed, seeds = args
    rng = random.Random(seed)
    crashes = []
    for _ in range(count):
        data = mutate(rng, rng.choice(seeds))
        try:
            run_one(data, rng)
        except Exception:  # noqa: BLE001 - that is what we are looking for
            crashes.append({"input_hex": data.hex(), "traceback": traceback.format_exc(limit=3)})
    return {"count": count, "crashes": crashes, "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    seeds = [p.read_bytes() for p in sorted(FIXTURES.glob("ffmpeg_publish*.bin"))]
    chunks = [(args.inputs // args.workers + (i < args.inputs % args.workers), args.seed * 1000 + i, seeds) for i in range(args.workers)]
    started = time.monotonic()
    with mp.Pool(args.workers) as pool:
        parts = pool.map(worker, chunks)
    elapsed = time.monotonic() - started
    crashes = [c for p in parts for c in p["crashes"]]  # type: ignore[attr-defined]
    result = {
        "inputs": args.inputs,
        "seconds": round(elapsed, 1),
        "inputs_per_s": round(args.inputs / elapsed),
        "crashes": len(crashes),
        "max_rss_mb_per_worker": round(max(int(p["max_rss_kb"]) for p in parts) / 1024, 1),  # type: ignore[call-overload]
        "seeds": len(seeds),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_rtmp.json").write_text(json.dumps({**result, "crash_samples": crashes[:20]}, indent=2))
    print(json.dumps(result))
    cells = [result[k] for k in ("inputs", "seconds", "inputs_per_s", "crashes", "max_rss_mb_per_worker")]
    print("| inputs | seconds | inputs/s | crashes | max RSS/worker MB |\n|---|---|---|---|---|")
    print("| " + " | ".join(str(c) for c in cells) + " |")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
