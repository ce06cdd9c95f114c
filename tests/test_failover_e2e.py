"""Reliability end to end: the stream actor killed with SIGKILL mid-publish; Ray restarts it and
the same publisher's stream continues in the same playlists after a discontinuity."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from .conftest import RayliveProcess
from .helpers import get, playlist_ready, publish, wait_for

pytestmark = pytest.mark.e2e


def test_killed_stream_actor_restarts_and_the_stream_continues(raylive: RayliveProcess) -> None:
    key = raylive.create_key("fo1")
    base = f"{raylive.base_url}/live/fo1"
    ff = publish(raylive.rtmp_url(key), seconds=None)
    statuses: list[int] = []
    stop = threading.Event()

    def poll_master() -> None:  # a player reloading the multivariant playlist throughout
        while not stop.is_set():
            statuses.append(get(f"{base}/index.m3u8").status_code)
            stop.wait(0.2)

    try:
        wait_for(playlist_ready(f"{base}/index.m3u8"), 30, "fo1 to go live")
        wait_for(lambda: get(f"{base}/source/index.m3u8").text.count(".m4s") >= 2, 20, "2 segments")
        poller = threading.Thread(target=poll_master)
        poller.start()
        before = get(f"{base}/source/index.m3u8").text
        listed = [line for line in before.splitlines() if line.endswith(".m4s")]
        pid = raylive.api("GET", "/api/v1/streams/fo1").json()["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        def continued() -> str | None:
            text = get(f"{base}/source/index.m3u8").text
            after = text.split("#EXT-X-DISCONTINUITY")
            return text if len(after) == 2 and ".m4s" in after[1] else None

        text = wait_for(continued, 20, "a segment after the restart", detail=lambda: get(f"{base}/source/index.m3u8").text)
        restart_to_segment = time.monotonic() - killed
        assert isinstance(text, str)
        assert raylive.api("GET", "/api/v1/streams/fo1").json()["pid"] != pid
        assert ff.poll() is None  # the publisher never noticed
    finally:
        stop.set()
        ff.kill()
    assert set(statuses) == {200}, statuses  # the multivariant playlist never 404ed
    seq_before = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", before)[1])  # type: ignore[index]
    seq_after = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)[1])  # type: ignore[index]
    assert seq_after >= seq_before
    # Segments listed before the kill are still listed (window permitting) and still served.
    still = [s for s in listed if s in text]
    assert still and all(get(f"{base}/source/{s}").status_code == 200 for s in listed)
    print(f"restart to first new segment: {restart_to_segment:.1f}s")
    assert restart_to_segment < 12
