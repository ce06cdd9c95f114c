"""Processors that make video, against a real `raylive up`: their frames become a rendition of the
stream (its own multivariant playlist and MPD with the stream's audio), cut where the source is cut,
in time with it, played by ffprobe, hls.js and dash.js; a slow one keeps real-time pace; a detached
one ends."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import av
import m3u8
import numpy as np
import pytest
from ray import cloudpickle

import raylive as raylive_api
from raylive.api import Client

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module
BOX = (slice(150, 210), slice(260, 380))  # the middle of a 640x360 frame
INNER = (slice(156, 204), slice(266, 374))  # away from its edges (4:2:0 chroma blurs them)


class Boxes(raylive_api.Processor):
    def process(self, frame: np.ndarray, ts: float) -> np.ndarray:
        out = frame.copy()
        out[BOX] = (0, 0, 255)
        return out


class SlowBoxes(Boxes):
    def process(self, frame: np.ndarray, ts: float) -> np.ndarray:
        time.sleep(0.25)  # 7.5 frame intervals at 30 fps
        return super().process(frame, ts)


def _playlist(raylive: RayliveProcess, stream: str, rendition: str) -> m3u8.M3U8:
    return m3u8.loads(get(f"{raylive.base_url}/live/{stream}/{rendition}/index.m3u8").text)


def _produced(playlist: m3u8.M3U8) -> int:
    """Segments completed so far: the media sequence of the first listed plus those listed."""
    return int(playlist.media_sequence or 0) + len([s for s in playlist.segments if s.uri])


def _frames(raylive: RayliveProcess, stream: str, rendition: str, segments: list[str]) -> list[tuple[float, np.ndarray]]:
    """Every frame of these segments of one rendition (time, RGB)."""
    base = f"{raylive.base_url}/live/{stream}/{rendition}"
    init = get(f"{base}/{m3u8.loads(get(f'{base}/index.m3u8').text).segment_map[0].uri}").content
    frames = []
    for segment in segments:
        with av.open(io.BytesIO(init + get(f"{base}/{segment}").content), format="mp4") as c:
            frames += [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    return frames


def _shown_source_frame(image: np.ndarray, t: float, source: list[tuple[float, np.ndarray]]) -> float | None:
    """The time of the source frame this output frame shows outside the box (the source frame of
    its own time, or one before it when the processor's latest output was repeated), if any."""
    below = image[240::4, ::4].astype(int)  # below the box, every 4th pixel: enough to tell frames apart
    diffs = [(float(np.abs(below - img[240::4, ::4].astype(int)).mean()), ts) for ts, img in source if ts <= t + 0.001]
    best = min(diffs, default=(255.0, 0.0))
    return best[1] if best[0] < 10 else None


def _boxed(img: np.ndarray) -> bool:
    return float(np.abs(img[INNER].astype(int) - (0, 0, 255)).mean()) < 25


def test_a_processors_frames_become_a_rendition_in_step_with_the_source(raylive: RayliveProcess, rl: Client, player_origin: str) -> None:
    key = raylive.create_key("vo1")
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/vo1/index.m3u8"), 30, "vo1 to go live")
        handle = rl.stream("vo1").attach(Boxes, output=True, name="boxes", num_cpus=0.1)
        view = f"{raylive.base_url}/live/vo1/boxes.m3u8"
        ready = lambda: get(view).status_code == 200 and len(_playlist(raylive, "vo1", "boxes").segments) >= 3  # noqa: E731
        wait_for(ready, 60, "3 boxes segments")
        master = m3u8.loads(get(view).text)
        source, boxes = _playlist(raylive, "vo1", "source"), _playlist(raylive, "vo1", "boxes")
        durations = {s.uri: s.duration for s in source.segments if s.uri}  # not the open one (its parts only)
        common = [s for s in boxes.segments if s.uri in durations]
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,width,height", "-of", "json", view],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        with browser_page(page_url(player_origin, "hls", view, {"lowLatencyMode": True})) as page:
            wait_for(
                lambda: page.evaluate("document.getElementById('v').currentTime > 3 || window.errors.length > 0"),
                60,
                "hls.js to play 3 s of the boxes rendition",
                detail=lambda: (video_state(page), get(f"{raylive.base_url}/live/vo1/boxes/index.m3u8").text[-600:]),
            )
            state = video_state(page)
            tracks = page.evaluate("[window.player.audioTracks.length, window.player.levels.length]")
        with browser_page(page_url(player_origin, "dash", view.replace(".m3u8", ".mpd"))) as page:
            wait_for(
                lambda: page.evaluate("document.getElementById('v').currentTime > 3 || window.errors.length > 0"),
                60,
                "dash.js to play 3 s of the boxes rendition",
                detail=lambda: video_state(page),
            )
            dash_state = video_state(page)
        stats = handle.stats()[0]
        handle.detach()
        wait_for(lambda: "#EXT-X-ENDLIST" in get(f"{raylive.base_url}/live/vo1/boxes/index.m3u8").text, 20, "the boxes playlist to end")
        before = _produced(_playlist(raylive, "vo1", "source"))
        wait_for(lambda: _produced(_playlist(raylive, "vo1", "source")) > before, 20, "the source to go on")
        assert not _playlist(raylive, "vo1", "source").is_endlist
    finally:
        ff.kill()
    # Its own multivariant playlist: the processed video with the stream's audio; the stream's own lists it not.
    assert [p.uri.split("?")[0] for p in master.playlists] == ["boxes/index.m3u8"]
    assert [m.uri.split("?")[0] for m in master.media] == ["audio/index.m3u8"]
    assert "boxes" not in get(f"{raylive.base_url}/live/vo1/index.m3u8").text
    # Segments named (numbered) as the source's, as long, starting at the same instant.
    # (its first, begun at the keyframe after the attach, may be shorter)
    assert len(common) >= 2 and all(abs(s.duration - durations[s.uri]) <= 0.034 for s in common[1:]), (boxes.dumps(), durations)
    (t_box, img_box), *_ = boxed = _frames(raylive, "vo1", "boxes", [common[-1].uri])
    source_frames = _frames(raylive, "vo1", "source", [common[-2].uri, common[-1].uri])
    t_src, img_src = next((t, img) for t, img in source_frames if t >= t_box - 0.001)
    assert abs(t_box - t_src) <= 0.034 and _boxed(img_box) and not _boxed(img_src)
    # Elsewhere the source's picture: of the frame's own time, or (a repeat when the processor was
    # late, as under CI's load) of an earlier one, never a later one.
    shown = [(t, _shown_source_frame(img, t, source_frames)) for t, img in boxed]
    on_time = [t for t, s in shown if s is not None and abs(s - t) < 0.001]
    assert all(s is not None for _, s in shown) and len(on_time) >= len(boxed) // 3, shown
    streams = sorted((s["codec_type"], s["codec_name"]) for s in json.loads(probe.stdout)["streams"])
    assert probe.returncode == 0 and streams == [("audio", "aac"), ("video", "h264")], probe.stderr
    assert state["errors"] == [] and state["t"] > 3 and (state["w"], state["h"]) == (640, 360) and tracks == [1, 1]
    assert dash_state["errors"] == [] and dash_state["t"] > 3 and (dash_state["w"], dash_state["h"]) == (640, 360)  # its own MPD
    # A fast processor is given (nearly) every frame, though a part's frames come at once.
    assert stats["processed"] >= 30 and stats["repeated"] <= 0.2 * stats["output_frames"] and stats["delay_ms_p50"] < 500, stats


def _edge_s(playlist: m3u8.M3U8) -> float:
    """Wall time of the end of the playlist's newest segment (its program date-time + duration).
    (`m3u8`'s `current_program_date_time` adds the listed parts' durations: a segment late.)"""
    last = [s for s in playlist.segments if s.uri][-1]  # not the open one (its parts only)
    return float(last.program_date_time.timestamp() + last.duration)


def _part_lag_s(raylive: RayliveProcess, stream: str, samples: int = 12) -> float:
    """Median of wall clock minus where the source's newest listed part ends (the newest segment's
    end plus the parts of the one being written), sampled every 0.2 s."""
    lags = []
    for _ in range(samples):
        playlist = _playlist(raylive, stream, "source")
        being_written = [p.duration for s in playlist.segments if not s.uri for p in s.parts]
        lags.append(time.time() - _edge_s(playlist) - sum(being_written))
        time.sleep(0.2)
    return float(np.median(lags))


def test_a_slow_processors_rendition_keeps_real_time_pace(raylive: RayliveProcess, rl: Client) -> None:
    key = raylive.create_key("vo2")
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/vo2/index.m3u8"), 30, "vo2 to go live")
        wait_for(lambda: len(_playlist(raylive, "vo2", "source").segments) >= 2, 30, "a whole source segment")
        lag_before = _part_lag_s(raylive, "vo2")
        handle = rl.stream("vo2").attach(SlowBoxes, output=True, name="slow", num_cpus=0.1, max_delay_s=0.3)
        slow_url = f"{raylive.base_url}/live/vo2/slow/index.m3u8"
        wait_for(lambda: get(slow_url).status_code == 200 and "#EXTINF" in get(slow_url).text, 60, "a segment of the slow rendition")
        start, began = _edge_s(_playlist(raylive, "vo2", "slow")), time.monotonic()
        lag_during = _part_lag_s(raylive, "vo2", samples=40)  # ≈ 8 s
        elapsed = time.monotonic() - began
        slow, source = _playlist(raylive, "vo2", "slow"), _playlist(raylive, "vo2", "source")
        stats = handle.stats()[0]
    finally:
        ff.kill()
    # ≈ 8 s of wall time later, as much more media (give or take a segment), about as far along as the source.
    assert elapsed - 2.0 <= _edge_s(slow) - start <= elapsed + 2.0, (elapsed, _edge_s(slow) - start)
    assert abs(_edge_s(slow) - _edge_s(source)) <= 2.5
    # The source's own playlist is as close to live as before: nothing of it waits for the processor.
    assert lag_during <= lag_before + 0.25, (lag_before, lag_during)
    # About 4 frames a second processed; every other frame repeats the latest output.
    assert stats["repeated"] > 100 and 10 <= stats["processed"] and stats["output_frames"] > 200, stats


def test_a_processor_host_killed_mid_segment_goes_on_in_a_period_of_its_own(raylive: RayliveProcess, rl: Client) -> None:
    key = raylive.create_key("vo3")
    ff = publish(raylive.rtmp_url(key), seconds=None)
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/vo3/index.m3u8"), 30, "vo3 to go live")
        handle = rl.stream("vo3").attach(Boxes, output=True, name="killed", num_cpus=0.1)
        wait_for(lambda: get(f"{raylive.base_url}/live/vo3/killed.m3u8").status_code == 200, 60, "the processed rendition")
        wait_for(lambda: len(_playlist(raylive, "vo3", "killed").segments) >= 2, 30, "2 boxes segments")
        # Killed once the segment being written has parts out (viewers may hold them).
        wait_for(lambda: _playlist(raylive, "vo3", "killed").segments[-1].uri is None, 10, "a segment in the making")
        pid = handle.stats()[0]["pid"]
        base = f"{raylive.base_url}/live/vo3/killed"
        seen: dict[str, bytes] = {}  # each part's bytes when first listed
        texts = []

        def look() -> int:
            texts.append(get(f"{base}/index.m3u8").text)
            for part in [p.uri for s in m3u8.loads(texts[-1]).segments for p in s.parts]:
                if part not in seen:
                    seen[part] = get(f"{base}/{part}").content
            return _produced(m3u8.loads(texts[-1]))

        look()
        os.kill(pid, signal.SIGKILL)
        killed_at = look()
        wait_for(lambda: look() >= killed_at + 3, 60, "3 more boxes segments after the kill", interval_s=0.1)
        mpd = get(f"{raylive.base_url}/live/vo3/killed.mpd").text
        restarted = handle.stats()[0]
        handle.detach()
    finally:
        ff.kill()
    assert restarted["pid"] != pid
    # Every name stands for one set of bytes: none listed twice, a part the same when fetched again,
    # each segment the concatenation of its parts.
    for text in texts:
        listed = [p.uri for s in m3u8.loads(text).segments for p in s.parts] + [s.uri for s in m3u8.loads(text).segments if s.uri]
        assert len(set(listed)) == len(listed), text
    changed = [uri for uri, data in seen.items() if get(f"{base}/{uri}").content != data]
    assert changed == [], (changed, texts[-1])
    playlist = m3u8.loads(texts[-1])
    for seg in playlist.segments:
        if seg.uri and seg.parts:
            assert get(f"{base}/{seg.uri}").content == b"".join(seen[p.uri] for p in seg.parts), seg.uri
    # The restarted host's own period (a batch that fails while Ray restarts it may start a second).
    assert texts[-1].count("#EXT-X-DISCONTINUITY\n") >= 1, texts[-1]
    # Its MPD goes on in a Period of its own, with that period's init and names, all served.
    inits = lambda text: re.findall(r'#EXT-X-MAP:URI="init-([0-9a-f]+)\.mp4"', text)  # noqa: E731
    last = mpd.split("<Period ")[-1]
    own = re.search(r'initialization="killed/init-([0-9a-f]+)\.mp4"', last)[1]  # type: ignore[index]
    assert mpd.count("<Period ") >= 2 and own in inits(texts[-1]) and own != inits(texts[0])[-1], mpd
    first = int(re.search(r'media="killed/[^"]+"\s+startNumber="(\d+)"', last)[1])  # type: ignore[index]
    assert get(f"{base}/init-{own}.mp4").status_code == 200 and get(f"{base}/{own}-{first}.m4s").status_code == 200
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "json", f"{raylive.base_url}/live/vo3/killed.m3u8"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr


def test_a_processors_rendition_goes_on_after_the_stream_actor_is_killed(raylive: RayliveProcess, rl: Client) -> None:
    key = raylive.create_key("vo4")
    ff = publish(raylive.rtmp_url(key), seconds=None)
    base = f"{raylive.base_url}/live/vo4/restored"
    try:
        wait_for(playlist_ready(f"{raylive.base_url}/live/vo4/index.m3u8"), 30, "vo4 to go live")
        handle = rl.stream("vo4").attach(Boxes, output=True, name="restored", num_cpus=0.1)
        wait_for(lambda: get(f"{raylive.base_url}/live/vo4/restored.m3u8").status_code == 200, 60, "the processed rendition")
        wait_for(lambda: len(_playlist(raylive, "vo4", "restored").segments) >= 2, 30, "2 processed segments")
        texts: list[str] = []

        def produced() -> int:
            texts.append(get(f"{base}/index.m3u8").text)
            return _produced(m3u8.loads(texts[-1]))

        os.kill(raylive.api("GET", "/api/v1/streams/vo4").json()["pid"], signal.SIGKILL)  # Ray restarts it
        killed_at = produced()
        wait_for(lambda: produced() >= killed_at + 3, 60, "3 more segments after the restart", interval_s=0.2)
        handle.detach()
    finally:
        ff.kill()
    for text in texts:  # no name listed twice
        listed = [p.uri for s in m3u8.loads(text).segments for p in s.parts] + [s.uri for s in m3u8.loads(text).segments if s.uri]
        assert len(set(listed)) == len(listed), text
    assert "#EXT-X-ENDLIST" not in texts[-1]
