"""Analytics benchmark: events/s through the pipeline (Redis Stream -> AnalyticsWriter -> chdb)
and query latency of a 24 h viewer timeline over 10 M events.

    python benchmarks/analytics.py                      # writes benchmarks/results/analytics.{json,md}
    python benchmarks/analytics.py --events 100000 --rows 1000000

The writer is the same class the `AnalyticsWriter` actor runs (its thread drains the buffer),
here in-process so the figure is the pipeline's, not Ray's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from raylive import analytics  # noqa: E402
from raylive.actors.analytics import AnalyticsWriter  # noqa: E402
from raylive.launcher.redis_server import EmbeddedRedis  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latest"  # scratch; python -m benchmarks keeps dated reports


def pipeline_rate(writer: AnalyticsWriter, r: redis.Redis, events: int) -> dict[str, float]:
    """Producers append `events` viewer heartbeats as fast as they can; time until all are in ClickHouse."""
    before = writer.inserted
    t0 = time.perf_counter()
    now = time.time()
    for start in range(0, events, 1000):
        with r.pipeline(transaction=False) as p:
            for i in range(start, min(events, start + 1000)):
                analytics.emit(p, "viewer", ts=now, stream=f"s{i % 100}", sid=f"v{i}", event="heartbeat", rendition="source", bytes=700_000)
            p.execute()
    produced = time.perf_counter() - t0
    while writer.inserted - before < events:
        if time.perf_counter() - t0 > 600:
            raise RuntimeError(f"writer stuck: {writer.stats()}")
        time.sleep(0.05)
    total = time.perf_counter() - t0
    return {"events": events, "produce_s": round(produced, 2), "total_s": round(total, 2), "events_per_s": round(events / total)}


def load_day(client: object, rows: int, stream: str, t_end: float) -> float:
    """`rows` heartbeats spread over 24 h: sessions of 5-60 min, one heartbeat per 5 s each."""
    rng = np.random.default_rng(1)
    t_start = t_end - 86400
    t0 = time.perf_counter()
    chunk = 1_000_000
    base_id = 1 << 60
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ts = np.sort(rng.uniform(t_start, t_end, n))
        sids = rng.integers(0, max(1, rows // 240), n)  # ~240 heartbeats per session
        data = [
            [base_id + start + i, datetime.fromtimestamp(float(ts[i]), UTC), stream, f"v{sids[i]}", "heartbeat",
             ("source", "480p", "360p")[i % 3], 700_000, "bench"]
            for i in range(n)
        ]  # fmt: skip
        client.insert("viewer_events", data, column_names=["event_id", *analytics.TABLES["viewer"][1]])  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000, help="events pushed through the pipeline")
    ap.add_argument("--rows", type=int, default=10_000_000, help="viewer events in the 24 h query table")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    results: dict[str, object] = {"machine_cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="raylive-analytics-") as tmp:
        rs = EmbeddedRedis(Path(tmp) / "redis")
        url = rs.start()
        try:
            writer = AnalyticsWriter(f"chdb://{Path(tmp) / 'analytics'}", url)
            r = redis.Redis.from_url(url)
            pipeline_rate(writer, r, 10_000)  # warm-up
            runs = [pipeline_rate(writer, r, args.events) for _ in range(3)]
            results["pipeline"] = {**runs[0], "events_per_s": statistics.median(x["events_per_s"] for x in runs), "runs": runs}
            print("pipeline", results["pipeline"], flush=True)
            writer.drain(5)
            t_end = time.time()
            load_s = load_day(writer.client, args.rows, "day", t_end)
            latencies = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                report = writer.stream_report("day", t_end - 86400, t_end, 60)
                latencies.append(time.perf_counter() - t0)
            results["query"] = {
                "rows": args.rows,
                "load_s": round(load_s, 1),
                "timeline_points": len(report["viewers"]),
                "report_24h_step_60s_median_s": round(statistics.median(latencies), 3),
                "report_runs_s": [round(x, 3) for x in latencies],
            }
            print("query", results["query"], flush=True)
        finally:
            rs.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "analytics.json").write_text(json.dumps(results, indent=2))
    p, q = results["pipeline"], results["query"]
    table = (
        f"Analytics on {results['machine_cores']} cores (embedded chdb, Redis Stream buffer)\n\n"
        "| measure | value |\n|---|---|\n"
        f"| events/s through Redis Stream -> writer -> chdb (median of 3 x {args.events}) | {p['events_per_s']} |\n"  # type: ignore[index]
        f"| 24 h stream report (timeline step 60 s, peak, unique, watch time, mix, ingest) over {q['rows']:,} events, median | "  # type: ignore[index]
        f"{q['report_24h_step_60s_median_s']} s |\n"  # type: ignore[index]
    )
    (RESULTS / "analytics.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
