"""The researchers' Python API against a real `raylive up`: frames as numpy, processors as Ray
actors, their results in ClickHouse and on the WebSocket, slow and failing processors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis
import websockets
from ray import cloudpickle

import raylive as raylive_api
from raylive.api import Client

from ..conftest import RayliveProcess
from ..helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parent.parent.parent
# Ray workers cannot import this test module: ship its processor classes by value, as a notebook's are.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Brightness(raylive_api.Processor):
    def process(self, frame: np.ndarray, ts: float) -> dict[str, Any]:
        return {"mean": float(frame.mean()), "shape": list(frame.shape)}


class Sleepy(raylive_api.Processor):
    def process(self, frame: np.ndarray, ts: float) -> dict[str, Any]:
        time.sleep(1.0)
        return {"slept": 1}


class Broken(raylive_api.Processor):
    def process(self, frame: np.ndarray, ts: float) -> None:
        raise RuntimeError("boom")


def live_stream(rl_proc: RayliveProcess, name: str, seconds: float | None = None) -> Any:
    key = rl_proc.create_key(name)
    ff = publish(rl_proc.rtmp_url(key), seconds)
    wait_for(playlist_ready(f"{rl_proc.base_url}/live/{name}/index.m3u8"), 30, f"{name} to go live")
    return ff


def test_frames_come_as_numpy_at_the_requested_rate(raylive: RayliveProcess, rl: Client) -> None:
    ff = live_stream(raylive, "py1")
    try:
        assert "py1" in [s.name for s in rl.streams()]
        assert rl.stream("py1").info().video["resolution"] == "640x360"
        got = []
        for ts, frame in rl.stream("py1").frames(rendition="240p", fps=5):
            got.append((ts, frame))
            if len(got) == 16:
                break
        # The thumbnail comes from the same tap.
        thumb = get(f"{raylive.base_url}/live/py1/thumbnail.jpg")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    finally:
        ff.kill()
    assert all(f.shape == (240, 426, 3) and f.dtype == np.uint8 for _, f in got)
    times = [t for t, _ in got]
    assert times == sorted(times) and len(set(times)) == len(times)
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert 4.0 <= rate <= 6.0, times
    assert got[-1][1].std() > 10  # a test pattern, not a blank frame


def test_processor_results_reach_sql_and_the_websocket(raylive: RayliveProcess, rl: Client) -> None:
    ff = live_stream(raylive, "py2")
    events: list[dict[str, Any]] = []

    async def listen() -> None:
        ticket = raylive.api("POST", "/api/v1/ws-tickets").json()["ticket"]
        url = f"ws://127.0.0.1:{raylive.http_port}/api/v1/ws/streams/py2?ticket={ticket}"
        async with websockets.connect(url) as ws:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and not any(e.get("event") == "processor" for e in events):
                try:
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 1)))
                except TimeoutError:
                    pass

    try:
        handle = rl.stream("py2").attach(Brightness, fps=2, rendition="360p", name="bright", num_cpus=0.1)
        asyncio.run(listen())
        query = "SELECT count() AS n, avg(JSONExtractFloat(payload, 'mean')) AS mean FROM processor_events WHERE stream = {s:String}"
        wait_for(lambda: rl.sql(query, s="py2")[0]["n"] >= 4, 40, "4 processor events in ClickHouse")
        stats = handle.stats()
        handle.detach()
    finally:
        ff.kill()
    pushed = next(e for e in events if e.get("event") == "processor")
    assert pushed["processor"] == "bright" and pushed["result"]["shape"] == [360, 640, 3]
    assert 0 < rl.sql(query, s="py2")[0]["mean"] < 255
    assert stats[0]["processed"] >= 4 and stats[0]["stream"] == "py2"
    with pytest.raises(Exception, match="only SELECT"):
        rl.sql("DROP TABLE processor_events")


def produced(raylive: RayliveProcess, name: str) -> int:
    """Segments produced so far: the media sequence of the first listed one plus those listed."""
    text = get(f"{raylive.base_url}/live/{name}/source/index.m3u8").text
    return int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1]) + text.count(".m4s")  # type: ignore[index]


def segment_times(raylive: RayliveProcess, name: str) -> list[float]:
    text = get(f"{raylive.base_url}/live/{name}/source/index.m3u8").text
    return [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text)]


def test_a_slow_processor_drops_frames_and_never_delays_segments(raylive: RayliveProcess, rl: Client) -> None:
    ff = live_stream(raylive, "py3")
    try:
        handle = rl.stream("py3").attach(Sleepy, fps=10, name="sleepy", num_cpus=0.1)
        wait_for(lambda: (s := handle.stats()) and s[0]["dropped"] >= 20, 40, "dropped frames reported", interval_s=1)
        # Segments keep their cadence: 3 more 2 s segments take about 6 s, slow processor or not.
        start, first = time.monotonic(), produced(raylive, "py3")
        wait_for(lambda: produced(raylive, "py3") >= first + 3, 12, "3 more segments")
        assert time.monotonic() - start < 8.5
        stats = handle.stats()[0]
        handle.detach()
    finally:
        ff.kill()
    assert stats["processed"] >= 1 and stats["dropped"] > stats["processed"]
    assert all(d <= 3.1 for d in segment_times(raylive, "py3"))


def test_a_failing_processor_is_detached_and_the_stream_is_unaffected(raylive: RayliveProcess, rl: Client) -> None:
    ff = live_stream(raylive, "py4")
    try:
        handle = rl.stream("py4").attach(Broken, fps=5, max_errors=3, name="broken", num_cpus=0.1)
        wait_for(lambda: any(s.get("detached") for s in handle.stats()), 30, "the failing processor to be detached")
        assert "3 consecutive errors" in handle.stats()[0]["detached"] and "boom" in handle.stats()[0]["detached"]
        before = get(f"{raylive.base_url}/live/py4/source/index.m3u8").text.count(".m4s")
        wait_for(
            lambda: get(f"{raylive.base_url}/live/py4/source/index.m3u8").text.count(".m4s") != before or before >= 6,
            10,
            "the stream to go on",
        )
        assert rl.stream("py4").info().state == "live"
        handle.detach()
    finally:
        ff.kill()


def test_attach_all_covers_a_stream_that_starts_later_even_after_a_registry_restart(raylive: RayliveProcess, rl: Client) -> None:
    handle = rl.attach_all(Brightness, fps=1, name="everywhere", num_cpus=0.1)
    # Whoever can write to Redis must not run code through the registry: a forged spec that would
    # create a file when unpickled is ignored (it lacks the cluster secret's signature).
    forged_marker = raylive.data_dir / "forged-spec-ran"
    r = redis.Redis.from_url(json.loads((raylive.data_dir / "raylive.json").read_text())["redis_url"])
    r.hset("rl:processors", "forged", cloudpickle.dumps(_RunsWhenUnpickled(str(forged_marker))))
    try:
        family = psutil.Process(raylive.proc.pid).children(recursive=True)
        registry = next(p for p in family if "ray::ProcessorRegistry" in " ".join(p.cmdline()))
        registry.kill()  # SIGKILL: Ray restarts it, and it reads the attached processors back from Redis
        registry.wait(10)
        ff = live_stream(raylive, "py5")
        try:
            query = "SELECT count() AS n FROM processor_events WHERE stream = 'py5' AND processor = 'everywhere'"
            wait_for(lambda: rl.sql(query)[0]["n"] >= 2, 60, "events from the attach_all processor on py5")
        finally:
            ff.kill()
        assert not forged_marker.exists()
    finally:
        r.hdel("rl:processors", "forged")
        handle.detach()


class _RunsWhenUnpickled:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def test_the_documented_example_and_the_examples_run(raylive: RayliveProcess, rl: Client, tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "python-api.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)[1].replace('"cam1"', '"doc1"')  # type: ignore[index]
    ff = live_stream(raylive, "doc1")
    env = {**os.environ, "RAYLIVE_DATA_DIR": str(raylive.data_dir), "PYTHONPATH": str(ROOT)}

    def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, env=env)

    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "(360, 640, 3) uint8" in out.stdout and "'doc1'" in out.stdout and "'processed'" in out.stdout, out.stdout
        motion = run(ROOT / "examples" / "motion.py", "doc1", "--seconds", "6")
        assert motion.returncode == 0 and "biggest changes on doc1" in motion.stdout, motion.stderr[-3000:]
        grid = run(ROOT / "examples" / "thumbnail_grid.py", str(tmp_path / "grid.jpg"))
        assert grid.returncode == 0 and "doc1" in grid.stdout, grid.stderr[-3000:]
        assert (tmp_path / "grid.jpg").read_bytes()[:2] == b"\xff\xd8"
        gpu = run(ROOT / "examples" / "gpu_classifier.py", "--seconds", "3")
        assert gpu.returncode == 0 and ("skipped" in gpu.stdout or "processed" in gpu.stdout), gpu.stderr[-3000:]
    finally:
        ff.kill()
