"""`Recorder`: a stream actor's recording of its publish sessions, written by a thread of its own so
the live path only hands over the files it wrote anyway (`StreamOutput.write`).

Storage is any fsspec URL (`recording.url`; default `<data_dir>/recordings`): a local directory
(each file written to a temporary name, fsync'd, then renamed) or an object store (a file counts
once the store acknowledged it). Layout: `<root>/<stream>/<recording>/index.json` and
`<root>/<stream>/<recording>/<rendition>/<file>`. A segment is listed in `index.json` only after
it is stored, so a killed actor loses at most the segment in flight. A write that fails marks the
recording failed with the reason; the live stream never waits for storage."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..runtime.packaging.live import StoredFile
from ..runtime.recording import CHUNK, COMPLETE, FAILED, INDEX, RECORDING, Recording, RecordingPlan, chunk_path, expired, recording_id

log = logging.getLogger(__name__)
RETENTION_CHECK_S = 60.0  # the retention policy is applied this often while the actor lives (and at each begin and end)
MAX_QUEUED_BYTES = 64 << 20  # storage this far behind (≈ 3 min of a 3 Mb/s ladder): the recording fails, the stream goes on


class RecordingStore:
    """Recordings in one fsspec location."""

    def __init__(self, url: str) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    def path(self, stream: str, rec: str, rel: str = "") -> str:
        return "/".join(p for p in (self.root, stream, rec, rel) if p)

    def put(self, stream: str, rec: str, rel: str, data: bytes, in_place: bool = False) -> None:
        """Durable when it returns. Locally through a temporary name (never a torn file), or
        `in_place` (truncated first: what a full disk still has room for)."""
        target = self.path(stream, rec, rel)
        if not self.local:
            self.fs.pipe_file(target, data)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = target if in_place else f"{target}.{secrets.token_hex(4)}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            if not in_place:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # a half-written file would hold the space a full disk lacks
            raise
        if not in_place:
            os.replace(tmp, target)

    def get(self, stream: str, rec: str, rel: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self.path(stream, rec, rel))
            return data
        except (FileNotFoundError, OSError):
            return None

    def save(self, rec: Recording, saved: int) -> int:
        """The log chunks holding the segments listed since `saved`, then the index: a segment is
        named only once stored, and counted only once named. Returns what is saved now."""
        for rel, data in rec.chunks_since(saved):
            self.put(rec.stream, rec.id, rel, data)
        self.put(rec.stream, rec.id, INDEX, rec.index_json())
        return len(rec.log)

    def recording(self, stream: str, rec_id: str, full: bool = True, base: Recording | None = None) -> Recording | None:
        """A recording; `full`: with its segments (`base`: a copy read before, whose whole chunks
        are not read again)."""
        data = self.get(stream, rec_id, INDEX)
        if not data:
            return None
        rec = Recording.from_index(data)
        if not full:
            return rec
        start = len(base.log) // CHUNK if base is not None and base.id == rec_id else 0
        for rendition, entry in base.log[: start * CHUNK] if base is not None and start else []:
            rec.take(rendition, entry)
        for k in range(start, math.ceil(rec.entries / CHUNK)):
            chunk = self.get(stream, rec_id, chunk_path(k))
            if chunk is None:
                break
            rec.extend(chunk)
        rec.entries = len(rec.log)  # a chunk written just before a kill may hold more than the index counted
        return rec

    def recordings(self, stream: str) -> list[Recording]:
        """A stream's recordings, oldest first, without their segments."""
        try:
            names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path(stream, ""), detail=False))
        except (FileNotFoundError, OSError):
            return []
        return [r for name in names if (r := self.recording(stream, name, full=False)) is not None]

    def delete(self, stream: str, rec: str) -> bool:
        try:
            self.fs.rm(self.path(stream, rec), recursive=True)
            return True
        except (FileNotFoundError, OSError):
            return False


class Recorder:
    """One stream's recordings: `begin` at a publish, `feed` every write, `end` when it ends."""

    def __init__(
        self, stream: str, url: str, max_age_s: float = 0, max_bytes: int = 0, on_done: Callable[[Recording], None] | None = None
    ) -> None:
        self.stream = stream
        self.store = RecordingStore(url)
        self.max_age_s, self.max_bytes = max_age_s, max_bytes
        self.on_done = on_done or (lambda rec: None)
        self._queue: deque[tuple[str, Any]] = deque()
        self._queued_bytes = 0
        self._wake = threading.Condition()
        self.recording: Recording | None = None  # the one being written (the thread's)
        self._accepting = False
        self._busy = False
        self._saved = 0  # segments of the current recording saved in its log
        self._saved_index = b""  # and its index as last saved
        self._next_retention = time.monotonic() + RETENTION_CHECK_S
        threading.Thread(target=self._run, name="stream-recorder", daemon=True).start()

    # -- the stream actor's side: never blocks ---------------------------------------------
    def begin(self, started_at: float) -> str:
        """A new recording; returns its id."""
        rec = Recording(recording_id(started_at, secrets.token_hex(3)), self.stream, started_at)
        self._accepting = True
        self._put("begin", rec, 0)
        return rec.id

    def resume(self, recording: Recording | None) -> None:
        """After a restart of the actor: go on with the recording it was writing, if any."""
        if recording is not None and recording.state == RECORDING:
            self._accepting = True
            self._put("resume", recording, 0)

    def feed(self, files: list[StoredFile]) -> None:
        if not self._accepting:
            return
        size = sum(len(f.data) for f in files)
        if self._queued_bytes + size > MAX_QUEUED_BYTES:
            self._accepting = False
            self._put("fail", f"storage too slow: {MAX_QUEUED_BYTES >> 20} MiB waiting to be written", 0)
            return
        self._put("files", files, size)

    def end(self, ended_at: float) -> None:
        if self._accepting:
            self._accepting = False
            self._put("end", ended_at, 0)

    def idle(self) -> bool:
        """Nothing waits to be stored (the actor may exit)."""
        with self._wake:
            return not self._queue and not self._busy

    def _put(self, kind: str, value: Any, size: int) -> None:
        with self._wake:
            self._queue.append((kind, value))
            self._queued_bytes += size
            self._wake.notify()

    # -- the recorder's thread ---------------------------------------------------------------
    def _run(self) -> None:
        plan: RecordingPlan | None = None
        kind: str
        value: Any
        while True:
            with self._wake:
                self._busy = False
                if not self._queue:
                    self._wake.wait(RETENTION_CHECK_S)
                if time.monotonic() >= self._next_retention:
                    kind, value = "retention", None
                elif self._queue:
                    kind, value = self._queue.popleft()
                else:
                    continue
                self._busy = True
            try:
                if kind == "retention":
                    self._apply_retention()
                    continue
                if kind in ("begin", "resume"):
                    rec = value
                    self.recording, plan = rec, RecordingPlan(rec)
                    self._save(rec, len(rec.log))
                    self._close_orphans()
                    self._apply_retention()
                elif self.recording is None or plan is None or self.recording.state != RECORDING:
                    pass  # not recording (off, failed, or between publishes)
                elif kind == "files":
                    self._store(plan, value)
                elif kind == "end":
                    self.recording.state, self.recording.ended_at = COMPLETE, value
                    self._save(self.recording, self._saved)
                    self.on_done(self.recording)
                    self._apply_retention()
                elif kind == "fail":
                    self._fail(str(value))
            except Exception as exc:  # noqa: BLE001 - storage full or away: this recording fails, the stream does not
                self._fail(f"{type(exc).__name__}: {exc}")
            finally:
                if kind == "files":
                    with self._wake:
                        self._queued_bytes -= sum(len(f.data) for f in value)

    def _store(self, plan: RecordingPlan, files: list[StoredFile]) -> None:
        rec = self.recording
        assert rec is not None
        listed = False
        for item in plan.plan(files):
            self.store.put(self.stream, rec.id, item.path, item.data)
            if item.then is not None:
                rec.add(item.then[0], item.then[1], len(item.data), item.dash)
                listed = True
        if listed:  # only now, with its files stored, does the recording name them
            self._save(rec, self._saved)

    def _save(self, rec: Recording, saved: int) -> None:
        self._saved = self.store.save(rec, saved)
        self._saved_index = rec.index_json()

    def _fail(self, reason: str) -> None:
        rec = self.recording
        if rec is None or rec.state != RECORDING:
            return
        log.warning("stream %s: recording %s failed: %s", self.stream, rec.id, reason)
        rec.state, rec.error, rec.ended_at = FAILED, reason, time.time()
        try:
            self._save(rec, self._saved)
        except Exception:  # noqa: BLE001 - the storage is what failed (full, measured: ENOSPC on the index's new copy)
            # The last index it took, marked failed, written over itself: the API then says why.
            last = Recording.from_index(self._saved_index) if self._saved_index else rec
            last.state, last.error, last.ended_at = rec.state, rec.error, rec.ended_at
            with contextlib.suppress(Exception):
                self.store.put(self.stream, rec.id, INDEX, last.index_json(), in_place=True)
        self.on_done(rec)

    def _close_orphans(self) -> None:
        """Recordings left "recording" by a raylive that was killed whole: one actor per stream, so
        any but this one's is over. They end where their last stored segment ends."""
        for rec in self.store.recordings(self.stream):
            if rec.state == RECORDING and (self.recording is None or rec.id != self.recording.id):
                rec.state, rec.ended_at = COMPLETE, rec.last_end or rec.started_at
                self.store.put(self.stream, rec.id, INDEX, rec.index_json())
                log.info("stream %s: recording %s was left open (raylive killed?); closed at its last segment", self.stream, rec.id)

    def _apply_retention(self) -> None:
        self._next_retention = time.monotonic() + RETENTION_CHECK_S
        if not (self.max_age_s or self.max_bytes):
            return
        for rec_id in expired([r.summary() for r in self.store.recordings(self.stream)], self.max_age_s, self.max_bytes):
            if self.recording is None or rec_id != self.recording.id:
                self.store.delete(self.stream, rec_id)
                log.info("stream %s: recording %s removed by the retention policy", self.stream, rec_id)
