"""The recorder's thread and storage: the same recording written to a local directory (fsync'd),
fsspec's memory filesystem and an S3-compatible store (moto's server standing in); a storage that
refuses writes fails the recording with the reason and never blocks the stream."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raylive.actors.recorder import Recorder, RecordingStore
from raylive.runtime.packaging.hls import MediaPlaylist, PlaylistSegment
from raylive.runtime.packaging.live import StoredFile
from raylive.runtime.recording import COMPLETE, FAILED, Recording

from ..helpers import listen_port, wait_for


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = listen_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="recordings")
    yield "s3://recordings/raylive"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _batches(n: int) -> list[list[StoredFile]]:
    """n segments of one rendition as a stream writes them: each with the playlist naming it."""
    playlist, out = MediaPlaylist(window=3), []
    for i in range(n):
        epoch = "e1" if i < n // 2 else "e2"  # a reconnect half-way: a new init, a discontinuity
        seg = PlaylistSegment(f"{epoch}-{i}.m4s", 2.0, 1000.0 + 2 * i, f"init-{epoch}.mp4", discontinuity=i == n // 2)
        playlist.append(seg)
        files = [StoredFile(f"source/{seg.uri}", bytes([i % 256]) * 1000, "video/mp4", True)]
        if i in (0, n // 2):
            files.insert(0, StoredFile(f"source/init-{epoch}.mp4", b"init" + epoch.encode(), "video/mp4", True))
        out.append([*files, StoredFile("source/index.m3u8", playlist.render().encode(), "application/vnd.apple.mpegurl", False)])
    return out


@pytest.mark.parametrize("kind", ["local", "memory", "s3"])
def test_a_recording_reads_back_whole_from_every_kind_of_storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = {"local": str(tmp_path / "rec"), "memory": f"memory://rec-{time.monotonic_ns()}"}.get(kind) or request.getfixturevalue("s3_url")
    done: list[Recording] = []
    recorder = Recorder("cam1", url, on_done=done.append)
    rec_id = recorder.begin(1000.0)
    for batch in _batches(6):
        recorder.feed(batch)
    recorder.end(1012.0)
    wait_for(lambda: done, 20, "the recording to complete")
    assert recorder.idle()
    store = RecordingStore(url)
    [listed] = store.recordings("cam1")  # its index only
    rec = store.recording("cam1", rec_id)  # and its segments from the log
    assert rec is not None and listed.summary() == rec.summary()
    assert rec.id == rec_id and rec.state == COMPLETE and rec.summary()["duration_s"] == 12.0
    assert rec.summary()["discontinuities"] == 1 and rec.summary()["bytes"] == 6000
    for seg in rec.segments["source"]:
        assert store.get("cam1", rec_id, f"source/{seg['uri']}") == bytes([int(seg["uri"].split("-")[1][0])]) * 1000
    assert store.get("cam1", rec_id, "source/init-e2.mp4") == b"inite2"
    assert "#EXT-X-ENDLIST" in (rec.media_playlist("source") or "")
    if kind == "local":
        assert not list((tmp_path / "rec").rglob("*.tmp"))  # written to a temporary name, then renamed
    assert store.delete("cam1", rec_id) and store.recordings("cam1") == []


def test_storage_that_refuses_writes_fails_the_recording_not_the_stream(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")  # the recordings' root is a file: every write fails
    done: list[Recording] = []
    recorder = Recorder("cam1", str(blocker / "rec"), on_done=done.append)
    recorder.begin(1000.0)
    started = time.monotonic()
    for batch in _batches(4):
        recorder.feed(batch)  # never waits for storage
    assert time.monotonic() - started < 0.1
    wait_for(lambda: done, 10, "the recording to be marked failed")
    assert done[0].state == FAILED and "Error" in done[0].error


def test_retention_keeps_the_newest_within_the_byte_limit(tmp_path: Path) -> None:
    url = str(tmp_path / "rec")
    recorder = Recorder("cam1", url, max_bytes=2500)
    done = threading.Event()
    recorder.on_done = lambda rec: done.set()
    ids = []
    for start in (1000.0, 2000.0, 3000.0):
        done.clear()
        ids.append(recorder.begin(start))
        for batch in _batches(2):
            recorder.feed(batch)  # 2,000 bytes a recording
        recorder.end(start + 4)
        assert done.wait(10)
    wait_for(recorder.idle, 10, "the recorder to settle")
    # Each new recording makes room: only the newest stays (the one just ended is the newest).
    assert [r.id for r in RecordingStore(url).recordings("cam1")] == ids[-1:]


def test_a_recording_left_open_by_a_killed_raylive_is_closed_at_its_last_segment(tmp_path: Path) -> None:
    url = str(tmp_path / "rec")
    killed = Recorder("cam1", url)
    left_open = killed.begin(1000.0)
    for batch in _batches(2):
        killed.feed(batch)
    wait_for(killed.idle, 10, "the first recorder to store what it got")  # then the whole raylive is killed: no end
    assert RecordingStore(url).recording("cam1", left_open).state == "recording"  # type: ignore[union-attr]
    Recorder("cam1", url).begin(2000.0)  # the stream's next publish, after a restart
    wait_for(lambda: RecordingStore(url).recording("cam1", left_open).state == COMPLETE, 10, "the orphan closed")  # type: ignore[union-attr]
    assert RecordingStore(url).recording("cam1", left_open).ended_at == 1004.0  # type: ignore[union-attr]


def test_a_long_recording_is_saved_in_log_chunks_and_read_back_incrementally(tmp_path: Path) -> None:
    url = str(tmp_path / "rec")
    recorder = Recorder("cam1", url)
    rec_id = recorder.begin(1000.0)
    batches = _batches(600)  # the second half after a reconnect: 300 segments of each period
    for batch in batches[:280]:
        recorder.feed(batch)
    wait_for(recorder.idle, 30, "280 segments stored")
    store = RecordingStore(url)
    early = store.recording("cam1", rec_id)
    assert early is not None and len(early.segments["source"]) == 280
    for batch in batches[280:]:
        recorder.feed(batch)
    recorder.end(3000.0)
    wait_for(lambda: store.recording("cam1", rec_id, full=False).state == COMPLETE, 30, "the recording complete")  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "rec" / "cam1" / rec_id / "log").iterdir()) == [
        "000000.jsonl",
        "000001.jsonl",
        "000002.jsonl",
    ]
    whole, incremental = store.recording("cam1", rec_id), store.recording("cam1", rec_id, base=early)
    assert whole is not None and incremental is not None
    assert len(whole.segments["source"]) == 600 and incremental.segments == whole.segments and incremental == whole


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 64 KiB (a tmpfs: 16 pages) that fills up after a dozen segments."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode == 0
    )
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_storage_that_fills_up_fails_the_recording_with_the_reason_and_keeps_what_it_stored(small_disk: Path) -> None:
    url = str(small_disk / "rec")
    done: list[Recording] = []
    recorder = Recorder("cam1", url, on_done=done.append)
    rec_id = recorder.begin(1000.0)
    for batch in _batches(40):
        recorder.feed(batch)
    wait_for(lambda: done, 20, "the recording to be marked failed")
    assert done[0].state == FAILED and "No space left" in done[0].error, done[0].error
    # What the API reads (the storage's index) says so too, and every segment it lists plays.
    stored = RecordingStore(url).recording("cam1", rec_id)
    assert stored is not None and stored.state == FAILED and "No space left" in stored.error, stored
    listed = stored.segments["source"]
    assert len(listed) >= 5
    for seg in listed:
        assert (
            RecordingStore(url).get("cam1", rec_id, f"source/{seg['uri']}")
            == bytes([int(seg["uri"].split("-")[1].removesuffix(".m4s"))]) * 1000
        )
    assert not list(small_disk.rglob("*.tmp"))  # no half-written file left holding the space
