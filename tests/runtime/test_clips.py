"""Clips across a publisher's reconnect: the periods' CMAF segments (made by the ffmpeg CLI, one
run per period) joined into one MP4 that decodes whole, or refused with the reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from raylive.runtime.clips import Track, make_clip


def period(tmp: Path, name: str, size: str = "320x180", seconds: int = 4) -> tuple[Track, Track]:
    """A 4-s publish as CMAF: 1-s GOPs with B-frames (video), AAC (audio), each its own init + segments."""
    out = tmp / name
    out.mkdir()
    for kind, pick in (("v", "0:v"), ("a", "1:a")):
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
             "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds), "-map", pick,
             "-c:v", "libx264", "-g", "30", "-c:a", "aac", "-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4",
             "-hls_fmp4_init_filename", f"{kind}-init.mp4", "-hls_segment_filename", str(out / f"{kind}%d.m4s"), str(out / f"{kind}.m3u8")],
            check=True, cwd=out, timeout=60,
        )  # fmt: skip
    tracks = []
    for kind in ("v", "a"):
        segments = sorted(out.glob(f"{kind}[0-9]*.m4s"), key=lambda p: int(p.stem[1:]))
        tracks.append(Track((out / f"{kind}-init.mp4").read_bytes(), [p.read_bytes() for p in segments]))
    return tracks[0], tracks[1]


def probe(path: Path) -> dict[str, float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {s["codec_type"]: float(s["duration"]) for s in json.loads(out)["streams"]}


@pytest.mark.timeout(120)
def test_a_clip_across_a_reconnect_joins_the_periods_end_to_end(tmp_path: Path) -> None:
    (v1, a1), (v2, a2) = period(tmp_path, "first"), period(tmp_path, "second")
    mp4, duration = make_clip([v1, v2], [a1, a2], 1.0, 7.0)  # 3 s of each side of the reconnect
    assert duration == pytest.approx(6.0, abs=1 / 30)
    (tmp_path / "clip.mp4").write_bytes(mp4)
    durations = probe(tmp_path / "clip.mp4")
    assert durations["video"] == pytest.approx(6.0, abs=0.05) and durations["audio"] == pytest.approx(6.0, abs=0.1), durations
    # It decodes whole: no timestamp going back at the join (B-frames start a period's decoding times below its first pts).
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "clip.mp4"), "-f", "null", "-"], capture_output=True, text=True)
    assert decoded.returncode == 0 and decoded.stderr == "", decoded.stderr
    frames = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-count_frames", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0",
         str(tmp_path / "clip.mp4")], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert int(frames) == 180  # every frame of both 3-s spans, none lost at the join


@pytest.mark.timeout(120)
def test_a_reconnect_that_changed_the_picture_size_is_refused_with_the_reason(tmp_path: Path) -> None:
    (v1, a1), (v2, a2) = period(tmp_path, "first"), period(tmp_path, "second", size="640x360")
    with pytest.raises(ValueError, match="reconnect changed the video's codec settings"):
        make_clip([v1, v2], [a1, a2], 1.0, 7.0)
    mp4, duration = make_clip([v2], [a2], 1.0, 3.0)  # each side alone is fine
    assert duration == pytest.approx(2.0, abs=1 / 30) and mp4
