"""raylive's metrics: declared once here, recorded through `ray.util.metrics` (so they show in
the Ray dashboard and Ray's Prometheus export on every node), and re-served by the control app at
`GET /metrics` with the `raylive_` names for users who scrape raylive directly.
"""

from __future__ import annotations

import asyncio
import urllib.request
from functools import cache
from typing import Any

# name -> (kind, description, tag keys). configs/grafana-dashboard.json queries these names.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "raylive_rtmp_connections": ("gauge", "Open RTMP connections on a gateway", ()),
    "raylive_rtmp_connections_ended_total": (
        "counter",
        "RTMP connections ended, by reason (unpublished, publish refused, protocol error, timeout, connection limit, ...)",
        ("reason",),
    ),
    "raylive_live_streams": ("gauge", "Streams being published through a gateway", ()),
    "raylive_ingest_bytes_total": ("counter", "RTMP media bytes received", ("stream",)),
    "raylive_ingest_frames_total": ("counter", "Video frames received", ("stream",)),
    "raylive_segments_total": ("counter", "Media segments written", ("stream", "rendition")),
    "raylive_segment_latency_seconds": ("histogram", "From the end of a segment's media to the segment being stored", ("rendition",)),
    "raylive_part_latency_seconds": ("histogram", "From the end of an LL-HLS part's media to the part being stored", ("rendition",)),
    "raylive_playlist_wait_seconds": ("histogram", "How long a blocking playlist request was held", ("kind",)),
    "raylive_transcode_realtime_factor": ("gauge", "Media seconds encoded per wall second, per ladder rung", ("stream", "rendition")),
    "raylive_transcode_lag_seconds": ("gauge", "How far a stream's transcoder is behind its ingest", ("stream",)),
    "raylive_viewers": ("gauge", "Concurrent viewer sessions (a request in the last 30 s)", ("stream",)),
    "raylive_playback_requests_total": ("counter", "Playback requests, by kind and status", ("kind", "status")),
    "raylive_tap_dropped_frames_total": (
        "counter",
        "Frames a stream's tap skipped for a consumer that fell behind (it restarts at the next keyframe)",
        ("stream", "consumer"),
    ),
    "raylive_processor_delay_seconds": (
        "histogram",
        "From a source frame reaching a processor's actor to its output frame being encoded (processors that make video)",
        ("processor",),
    ),
    "raylive_analytics_pending_events": ("gauge", "Analytics events buffered in Redis, not yet in ClickHouse", ()),
}
LATENCY_BOUNDARIES = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
# Labels Ray adds that say nothing to a raylive user (WorkerId and NodeAddress keep series apart).
DROPPED_LABELS = {"otel_scope_name", "otel_scope_schema_url", "otel_scope_version", "SessionName", "Version", "Component"}


@cache
def _metric(name: str) -> Any:
    from ray.util import metrics

    kind, description, tags = METRICS[name]
    if kind == "counter":
        return metrics.Counter(name, description=description, tag_keys=tags)
    if kind == "gauge":
        return metrics.Gauge(name, description=description, tag_keys=tags)
    return metrics.Histogram(name, description=description, boundaries=LATENCY_BOUNDARIES, tag_keys=tags)


def _recording() -> bool:
    import ray

    return ray.is_initialized()  # outside Ray (unit tests, benchmarks in-process) there is nowhere to send them


def inc(name: str, value: float = 1.0, **tags: str) -> None:
    if value > 0 and _recording():
        _metric(name).inc(value, tags=tags or None)


def set_gauge(name: str, value: float, **tags: str) -> None:
    if _recording():
        _metric(name).set(value, tags=tags or None)


def observe(name: str, value: float, **tags: str) -> None:
    if _recording():
        _metric(name).observe(value, tags=tags or None)


# -- GET /metrics -----------------------------------------------------------------------
def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 - Ray's own metrics endpoints
        return str(r.read().decode())


async def gather_prometheus(endpoints: list[str]) -> str:
    """raylive's series from Ray's per-node exporters, merged into one Prometheus text page."""
    from prometheus_client.parser import text_string_to_metric_families  # the control app's only: not in every actor

    pages = await asyncio.gather(*(asyncio.to_thread(_fetch, url) for url in endpoints), return_exceptions=True)
    families: dict[str, tuple[str, str, list[str]]] = {}
    for page in pages:
        if isinstance(page, BaseException):
            continue  # a node that just went away: its series drop out
        for fam in text_string_to_metric_families(page):
            if not fam.name.startswith("ray_raylive_"):
                continue
            name = fam.name.removeprefix("ray_")
            entry = families.setdefault(name, (fam.type, fam.documentation, []))
            for sample in fam.samples:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()) if k not in DROPPED_LABELS)
                entry[2].append(f"{sample.name.removeprefix('ray_')}{{{labels}}} {sample.value}")
    lines: list[str] = []
    for name, (kind, doc, samples) in sorted(families.items()):
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", *samples]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
