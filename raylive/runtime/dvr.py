"""The DVR of a recorded live stream: its live media playlists and MPD reaching back into the
recording. Pure: the live text and the recording's index in, text out."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

from .packaging.dash import DashPeriod, DashTiming, render_mpd
from .packaging.hls import SEGMENT_TAGS, iso_utc
from .recording import Recording, epoch_of

_NS = "{urn:mpeg:dash:schema:mpd:2011}"
ElementTree.register_namespace("", _NS[1:-1])


def dvr_playlist(live: str, rec: Recording | None, rendition: str, window_s: float) -> str:
    """The live media playlist `live` with the recording's segments before its window, back to
    `window_s`: within a period while the recording has each one, and across a reconnect into the
    period before (after a discontinuity, as the live playlist had it); equal to the playlist a
    longer live window would have been."""
    lines = live.split("\n")
    seq_at = next((i for i, line in enumerate(lines) if line.startswith("#EXT-X-MEDIA-SEQUENCE:")), None)
    first = next((line.split("?", 1)[0] for line in lines if line and not line.startswith("#")), "")  # the window's first segment
    first_name = _segment_name(first)
    if rec is None or seq_at is None or first_name is None:
        return live
    msn = int(lines[seq_at].split(":", 1)[1])
    segs = rec.segments.get(rendition, [])
    at = {s["uri"]: k for k, s in enumerate(segs)}
    # Where the window's first segment is (or would be: the recorder may not have stored it yet),
    # then back from there while the recording has each segment (no gap within a period).
    k = at.get(first, at.get(f"{first_name[0]}-{first_name[1] - 1}.m4s", -2) + 1)
    older: list[dict[str, Any]] = []
    total, after = 0.0, first_name
    while len(older) < msn and k > 0:
        seg = segs[k - 1]
        name = _segment_name(seg["uri"])
        if name is None or (name[0] == after[0] and name[1] != after[1] - 1) or total + seg["duration_s"] > window_s:
            break
        older.insert(0, seg)
        total, after, k = total + seg["duration_s"], name, k - 1
    # Each discontinuity the DVR part shows was counted by the live playlist when it slid out.
    dseq = next((int(line.split(":", 1)[1]) for line in lines[: seq_at + 2] if line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:")), 0)
    while older and _epochs(older, first_name[0]) > dseq:
        older = older[1:]  # a recording that outlived the live playlist's count (never seen): fewer periods
    if not older:
        return live
    head = [line for line in lines[:seq_at] if not line.startswith("#EXT-X-SERVER-CONTROL")]
    control = next((line for line in lines[:seq_at] if line.startswith("#EXT-X-SERVER-CONTROL")), None)
    if control is not None:  # no delta updates: a skip would cut the DVR part out
        head.append(",".join(a for a in control.split(",") if not a.startswith("CAN-SKIP-UNTIL")).replace(":,", ":"))
    rest = [
        line.replace('/index.m3u8"', '/dvr.m3u8"') if line.startswith("#EXT-X-RENDITION-REPORT") else line
        for line in lines[seq_at + 1 :]
        if not line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE")
    ]
    body: list[str] = []
    for i, seg in enumerate(older):
        if i and epoch_of(seg["uri"]) != epoch_of(older[i - 1]["uri"]):
            body.append("#EXT-X-DISCONTINUITY")
        if not i or seg["init"] != older[i - 1]["init"]:
            body.append(f'#EXT-X-MAP:URI="{seg["init"]}"')
        body += [f"#EXT-X-PROGRAM-DATE-TIME:{iso_utc(seg['pdt'])}", f"#EXTINF:{seg['duration_s']:.3f},", seg["uri"]]
    live_map = next(i for i, line in enumerate(rest) if line.startswith("#EXT-X-MAP") or not line.startswith("#"))
    if rest[live_map] == f'#EXT-X-MAP:URI="{older[-1]["init"]}"':
        del rest[live_map]  # the window's first segment needs no init of its own now
    if epoch_of(older[-1]["uri"]) != first_name[0]:
        body.append("#EXT-X-DISCONTINUITY")  # the live window begins a period
    disc = dseq - _epochs(older, first_name[0])
    counted = [f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc}"] if disc else []
    return "\n".join([*head, f"#EXT-X-MEDIA-SEQUENCE:{msn - len(older)}", *counted, *_after_head(rest, body)])


def dvr_mpd(live: str, rec: Recording, window_s: float, now: float | None = None) -> str:
    """`live` (a dynamic MPD) with the recorded segments before each timeline's first and, once the
    first period's reach its start, the periods before it (a publisher's reconnects), back to
    `window_s`; their URLs are the live ones (served from the recording)."""
    root = ElementTree.fromstring(live)
    periods = list(root.iter(f"{_NS}Period"))
    if root.get("type") != "dynamic" or not periods:
        return live
    reached, whole = 0.0, True  # whole: the first period's timelines reach back to its first recorded segment
    for n, period in enumerate(periods):
        epoch = period.get("id", "")
        for rep in period.iter(f"{_NS}Representation"):
            template = rep.find(f"{_NS}SegmentTemplate")
            timeline = template.find(f"{_NS}SegmentTimeline") if template is not None else None
            if template is None or timeline is None or len(timeline) == 0:
                continue
            recorded = [s for s in rec.segments.get(rep.get("id", ""), []) if "t" in s and s["uri"].startswith(epoch + "-")]
            by_uri = {s["uri"]: s for s in recorded}
            number, total = int(template.get("startNumber", "0")), 0.0
            older: list[dict[str, Any]] = []
            while number - len(older) > 0 and (seg := by_uri.get(f"{epoch}-{number - len(older) - 1}.m4s")) is not None:
                if total + seg["duration_s"] > window_s:
                    break
                older.insert(0, seg)
                total += seg["duration_s"]
            if n == 0:
                whole = whole and bool(recorded) and f"{epoch}-{number - len(older)}.m4s" == recorded[0]["uri"]
            if not older:
                continue
            for i, seg in enumerate(older):
                timeline.insert(i, ElementTree.Element(f"{_NS}S", {"t": str(seg["t"]), "d": str(seg["d"])}))
            first_live = timeline[len(older)]
            if first_live.get("t") is None:  # it followed on from nothing before: say where it starts
                first_live.set("t", str(older[-1]["t"] + older[-1]["d"]))
            template.set("startNumber", str(number - len(older)))
            reached = max(reached, total)
    ast = datetime.fromisoformat(root.get("availabilityStartTime", "1970-01-01T00:00:00Z")).timestamp()
    before = _recorded_periods(rec, periods[0].get("id", ""), window_s - reached, ast) if whole else []
    if not reached and not before:
        return live
    at = list(root).index(periods[0])
    for i, element in enumerate(ElementTree.fromstring(render_mpd(before, DashTiming(ast, ast, 2.0, 0.0))).iter(f"{_NS}Period")):
        root.insert(at + i, element)
    depth = float(root.get("timeShiftBufferDepth", "PT0S")[2:-1] or 0) + reached
    if before:  # wall time from the oldest listed segment (a reconnect's gap included), and a segment to spare
        depth = max(depth, (time.time() if now is None else now) - ast - before[0].start_s + 2.0)
    root.set("timeShiftBufferDepth", f"PT{depth:.3f}S")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def _recorded_periods(rec: Recording, first_live: str, budget_s: float, ast: float) -> list[DashPeriod]:
    """The recording's periods before `first_live`, newest back, each whole or its newest
    unbroken run of segments, within `budget_s`; placed where the live MPD had them."""
    epochs = rec.epochs()
    video = rec.video_rendition()
    if first_live not in epochs or video is None:
        return []
    out: list[DashPeriod] = []
    taken_from = 0
    for epoch in reversed(epochs[: epochs.index(first_live)]):
        segs = [s for s in rec.segments[video] if s["uri"].startswith(epoch + "-") and "t" in s]
        taken: list[dict[str, Any]] = []
        for seg in reversed(segs):
            name = _segment_name(seg["uri"])
            if name is None or (taken and name[1] != taken_from - 1) or seg["duration_s"] > budget_s:
                break
            taken.insert(0, seg)
            budget_s, taken_from = budget_s - seg["duration_s"], name[1]
        since = taken[0]["pdt"] - 0.1 if taken else math.inf  # audio segments start up to an AAC frame before the video's
        reps = [rep for r in rec.segments if (rep := rec.dash_representation(epoch, r, since)) is not None]
        v = next((rep for rep in reps if rep.id == video), None)
        if v is None:
            break
        anchor = taken[0]["pdt"] - v.segments[0].start / v.timescale  # the wall time of the period's media time 0
        first_s = min(rep.segments[0].start / rep.timescale for rep in reps)
        reps = [replace(rep, presentation_time_offset=round(first_s * rep.timescale)) for rep in reps]
        out.insert(0, DashPeriod(epoch, anchor + first_s - ast, reps))
        if len(taken) < len(segs):
            break
    return out


def _segment_name(uri: str) -> tuple[str, int] | None:
    """(epoch, index) of a segment's name, `EPOCH-INDEX.m4s`."""
    epoch, _, index = uri.removesuffix(".m4s").partition("-")
    return (epoch, int(index)) if index.isdigit() else None


def _epochs(older: list[dict[str, Any]], live_epoch: str) -> int:
    """How many period changes `older` shows, counting the one into the live window's first segment."""
    epochs = [epoch_of(s["uri"]) for s in older] + [live_epoch]
    return sum(a != b for a, b in zip(epochs, epochs[1:], strict=False))


def _after_head(rest: list[str], body: list[str]) -> list[str]:
    """`body` placed before the first segment's own tags (after EXT-X-INDEPENDENT-SEGMENTS and the like)."""
    at = next((i for i, line in enumerate(rest) if line.startswith(SEGMENT_TAGS)), len(rest))
    return [*rest[:at], *body, *rest[at:]]
