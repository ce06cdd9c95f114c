"""One raylive instance per data dir: its lock, its runtime record, and what a killed one left.

`raylive up` takes `<data-dir>/raylive.lock` (an exclusive `flock`) before it starts anything and
holds it for its whole life; a CLI command that opens the data dir's Redis itself holds it for as
long as that Redis runs. So there are never two Redis servers on one data dir. The kernel drops
the lock when its holder dies, `kill -9` included.

`<data-dir>/raylive.json` says what the holder is doing: `state` is `starting` from the first
moment, then `up` once publish, playback and the API all answer; it lists the processes `up`
started in their own sessions (Redis, the Ray head), so that the next `up` after a `kill -9`
stops what is left of them before it starts anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from ..running import STARTING, UP, alive, read_record, read_runtime, runtime_path

__all__ = ["STARTING", "UP", "InstanceLock", "read_record", "read_runtime", "runtime_path"]

LOCK_FILE = "raylive.lock"


class InstanceLock:
    """The data dir's exclusive lock (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, timeout_s: float = 0.0) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.1)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def kept_secret(path: Path) -> str:
    """A random secret made once and kept in `path` (mode 0600)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def write_runtime(data_dir: Path, info: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a file)."""
    tmp = runtime_path(data_dir).with_suffix(".json.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(info))  # 0600: the Redis URLs carry their password
    tmp.replace(runtime_path(data_dir))


def process_identity(pid: int) -> dict[str, Any]:
    """What identifies a process across pid reuse: its pid and start time."""
    return {"pid": pid, "pid_started": psutil.Process(pid).create_time()}


def wait_until_up(data_dir: Path, timeout_s: float) -> dict[str, Any] | None:
    """Wait for a starting raylive to be up; None if it exited or the time ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = read_runtime(data_dir)
        if info is None or info.get("state") == UP:
            return info
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


# Children that must stop gracefully: Redis flushes its append-only file on SIGTERM. The Ray head
# has nothing to save and took ≈ 15 s to obey SIGTERM alone.
GRACEFUL = {"redis", "redis_media"}


def stop_leftovers(record: dict[str, Any], timeout_s: float = 15.0) -> list[str]:
    """Stop the processes a dead raylive's record lists (each checked by its start time, so a
    reused pid is never touched) and everything in their sessions. Returns what was stopped."""
    stopped = []
    for what, child in (record.get("children") or {}).items():
        pid = child.get("pid")
        if not alive(pid, child.get("pid_started")):
            continue
        if what in GRACEFUL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while alive(pid, child.get("pid_started")) and time.monotonic() < deadline:
                time.sleep(0.1)
        kill_session(int(pid))  # what is left of it: Ray's workers, Serve's HAProxy
        stopped.append(f"{what} (pid {pid})")
    return stopped


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (a process started with start_new_session leads
    one). Its process group is not enough: Serve's HAProxy runs in a group of its own."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.Error):
            if os.getsid(proc.pid) == sid:
                proc.kill()
