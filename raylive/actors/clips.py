"""Clips of recordings, made by a Ray task (PyAV loads in that worker only, not in the API's
replica): the segments that cover the span read from the recording storage, remuxed into one MP4
(`runtime/clips.py`) and stored beside the recordings as `<stream>/clips/<id>.mp4` + `<id>.json`."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import ray

from ..runtime.recording import Recording, epoch_of
from .recorder import RecordingStore

CLIPS = "clips"  # the folder beside a stream's recordings
MAX_CLIP_S = 600.0  # a clip is made in memory: 10 minutes of a 3 Mb/s ladder's source is ≈ 250 MB


def clip_span(rec: Recording, rendition: str, start_s: float, end_s: float) -> tuple[int, int, float]:
    """Indexes [i, j) of the rendition's segments covering [start_s, end_s) of the recording's
    timeline (its VOD playlist's: segment durations end to end), and where segment i starts."""
    segs = rec.segments.get(rendition) or []
    at, i, j, first_at = 0.0, None, len(segs), 0.0
    for k, s in enumerate(segs):
        if i is None and at + s["duration_s"] > start_s:
            i, first_at = k, at
        if at >= end_s:
            j = k
            break
        at += s["duration_s"]
    if i is None or i >= j:
        raise ValueError(f"the recording is {at:.1f} s long: nothing in {start_s:.1f}-{end_s:.1f} s")
    return i, j, first_at


def periods(segs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive segments split where a period ends (a reconnect: a discontinuity or a new init)."""
    out: list[list[dict[str, Any]]] = []
    for s in segs:
        if not out or s["disc"] or s["init"] != out[-1][-1]["init"]:
            out.append([])
        out[-1].append(s)
    return out


def offset_of(rec: Recording, wall: float) -> float:
    """Where a wall-clock time falls on the recording's timeline (program date-times of the source)."""
    at = 0.0
    video = rec.video_rendition()
    segs = rec.segments[video] if video else []  # the timeline clip_span counts on
    for s in segs:
        if s["pdt"] <= wall < s["pdt"] + s["duration_s"]:
            return at + wall - float(s["pdt"])
        at += s["duration_s"]
    raise ValueError(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(wall))} is not in recording {rec.id}")


@ray.remote(num_cpus=0.01, max_retries=0)
def build_clip(url: str, stream: str, rec_id: str, start_s: float, end_s: float) -> dict[str, Any]:
    """The clip's record, or {"error": why} for a span that cannot be one."""
    try:
        return _build_clip(url, stream, rec_id, start_s, end_s)
    except ValueError as exc:
        return {"error": str(exc)}


def _build_clip(url: str, stream: str, rec_id: str, start_s: float, end_s: float) -> dict[str, Any]:
    from ..runtime.clips import Track, make_clip  # PyAV, in this task's worker only

    store = RecordingStore(url)
    rec = store.recording(stream, rec_id)
    if rec is None:
        raise ValueError(f"no recording {rec_id} of {stream}")
    video = rec.video_rendition()
    if video is None:
        raise ValueError("the recording has no video")

    def read(rendition: str, segs: list[dict[str, Any]]) -> Track:
        init = store.get(stream, rec_id, f"{rendition}/{segs[0]['init']}")
        data = [store.get(stream, rec_id, f"{rendition}/{s['uri']}") for s in segs]
        if init is None or any(d is None for d in data):
            raise ValueError(f"recording {rec_id} misses files of {rendition} (removed meanwhile?)")
        return Track(init, [d for d in data if d is not None])

    i, j, first_at = clip_span(rec, video, start_s, end_s)
    vperiods = periods(rec.segments[video][i:j])
    vtracks = [read(video, p) for p in vperiods]
    atracks = None
    if "audio" in rec.segments:  # the audio of the same periods (a segment's name begins with its period's epoch)
        a, b, _ = clip_span(rec, "audio", start_s, end_s)
        spans = {epoch_of(p[0]["uri"]): p for p in periods(rec.segments["audio"][a:b])}
        atracks = [read("audio", spans[e]) if (e := epoch_of(p[0]["uri"])) in spans else None for p in vperiods]
    mp4, duration = make_clip(vtracks, atracks, start_s - first_at, end_s - first_at)
    clip = {
        "id": secrets.token_hex(4),
        "stream": stream,
        "recording": rec_id,
        "from_s": start_s,
        "to_s": end_s,
        "starts_at": rec.segments[video][i]["pdt"] + (start_s - first_at),
        "duration_s": round(duration, 3),
        "bytes": len(mp4),
        "created_at": time.time(),
    }
    store.put(stream, CLIPS, f"{clip['id']}.mp4", mp4)
    store.put(stream, CLIPS, f"{clip['id']}.json", json.dumps(clip).encode())
    return clip


def list_clips(store: RecordingStore, stream: str) -> list[dict[str, Any]]:
    try:
        names = store.fs.ls(store.path(stream, CLIPS), detail=False)
    except (FileNotFoundError, OSError):
        return []
    found = [store.get(stream, CLIPS, n.rsplit("/", 1)[-1]) for n in names if n.endswith(".json")]
    return sorted((json.loads(d) for d in found if d), key=lambda c: c["created_at"])
