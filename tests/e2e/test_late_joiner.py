"""A viewer who joins a stream that has been live for longer than every TTL still plays it, also
the rendition a processor makes of it.

Init segments and the multivariant playlist are written once per period; they used to expire with
the segment TTL, after which every rendition's init was 404 for a new viewer. This raylive runs
with a 20 s segment TTL so that "live for longer than the TTL" takes seconds, not minutes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
import ray
from ray import cloudpickle

import raylive as raylive_api

from ..conftest import RayliveProcess, start_raylive, stop_raylive
from ..helpers import get, publish, wait_for
from .browser import browser_page, page_url, video_state

pytestmark = pytest.mark.e2e
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module

SEGMENT_TTL_S = 20
# What hls.js was doing, for a failure's message: the level it plays, what is buffered, the playhead.
PLAYER_DETAIL = """(() => { const v = document.getElementById('v'), b = [];
  for (let i = 0; i < v.buffered.length; i++) b.push([v.buffered.start(i), v.buffered.end(i)]);
  return {level: player.currentLevel, loadLevel: player.loadLevel, levels: player.levels.length, buffered: b,
          paused: v.paused, readyState: v.readyState, warnings: window.warnings}; })()"""


class Negative(raylive_api.Processor):
    def process(self, frame: np.ndarray, ts: float) -> np.ndarray:
        return 255 - frame


@pytest.fixture(scope="module")
def short_ttl_raylive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayliveProcess]:
    root = tmp_path_factory.mktemp("short-ttl")
    config = root / "raylive.yaml"
    config.write_text(f"hls:\n  segment_ttl_s: {SEGMENT_TTL_S}\n")
    rl = start_raylive(root / "data", args=("--config", str(config)))
    yield rl
    stop_raylive(rl)


def _ffprobe_frames(url: str) -> int:
    """Frames ffprobe decodes from the first 3 s it reads of a live playlist (a live playlist never
    ends, so an unbounded -count_frames would read forever)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-read_intervals", "%+3", "-select_streams", "0", "-count_frames",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[0])


def test_a_viewer_joining_after_every_ttl_plays_every_rendition(short_ttl_raylive: RayliveProcess, player_origin: str) -> None:
    rl = short_ttl_raylive
    created = rl.api("POST", "/api/v1/streams", json={"name": "longlive", "ladder": ["source", "240p"]}).json()
    master = f"{rl.base_url}/live/longlive/index.m3u8"
    ff = publish(rl.rtmp_url(created["key"]), seconds=None)
    try:
        wait_for(lambda: get(master).text.count("#EXT-X-STREAM-INF") == 2, 60, "the source and its 240p rung")
        raylive_api.connect(data_dir=rl.data_dir).stream("longlive").attach(Negative, output=True, name="negative", num_cpus=0.1)
        ray.shutdown()  # the processor lives on in the cluster
        view = f"{rl.base_url}/live/longlive/negative"
        wait_for(lambda: "#EXTINF" in get(f"{view}/index.m3u8").text, 60, "the processor's first segment")
        live_since = time.monotonic()
        source_url = f"{rl.base_url}/live/longlive/source/index.m3u8"
        source = wait_for(lambda: t if "#EXTINF" in (t := get(source_url).text) else None, 10, "the first segment")
        assert isinstance(source, str)
        first_segment = next(line for line in source.splitlines() if line.endswith(".m4s") and not line.startswith("#"))
        # Nobody watches until the stream has been live for well over the TTL: no replica has the
        # init segments cached, so they must still be in Redis.
        while time.monotonic() - live_since < 2.5 * SEGMENT_TTL_S:
            assert ff.poll() is None, ff.stderr.read() if ff.stderr else ""
            time.sleep(1)
        for rendition in ("source", "240p", "audio", "negative"):
            playlist = get(f"{rl.base_url}/live/longlive/{rendition}/index.m3u8")
            assert playlist.status_code == 200
            init = next(line.split('"')[1] for line in playlist.text.splitlines() if line.startswith("#EXT-X-MAP"))
            assert get(f"{rl.base_url}/live/longlive/{rendition}/{init}").status_code == 200, f"{rendition}/{init}"
            assert _ffprobe_frames(f"{rl.base_url}/live/longlive/{rendition}/index.m3u8") > 0
        assert get(master).status_code == 200
        # The processor's own multivariant playlist (its video and the stream's audio) and MPD.
        assert _ffprobe_frames(f"{view}.m3u8") > 0
        mpd = get(f"{view}.mpd")
        assert mpd.status_code == 200 and 'type="dynamic"' in mpd.text
        # The TTL was in force: the first segment, long out of the window, is gone.
        assert get(f"{rl.base_url}/live/longlive/source/{first_segment}").status_code == 404
        states = []
        for url in (master, f"{view}.m3u8"):
            with browser_page(page_url(player_origin, "hls", url)) as page:
                wait_for(
                    lambda: page.evaluate("document.getElementById('v').currentTime > 3 || window.errors.length > 0"),
                    60,
                    f"hls.js to play {url}",
                    detail=lambda u=url, p=page: (video_state(p), p.evaluate(PLAYER_DETAIL), get(u).text),
                )
                states.append(video_state(page))
    finally:
        ff.terminate()
        ff.wait(10)
    for state in states:
        assert state["errors"] == []
        assert state["t"] > 3
