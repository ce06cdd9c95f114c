"""Session-wide fixtures: one real `raylive up` (real Ray, real Redis) shared by the e2e tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from .helpers import listen_port

# Loopback-only test cluster: token auth adds nothing here (see the developers' guide).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Ray exports metrics every 10 s by default; the /metrics test need not wait that long.
os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")


@dataclass
class RayliveProcess:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    rtmp_port: int
    http_port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raylive.cli", *args, "--data-dir", str(self.data_dir)], capture_output=True, text=True, timeout=60
        )

    def create_key(self, name: str) -> str:
        out = self.cli("keys", "create", name)
        assert out.returncode == 0, out.stderr
        return next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("key:"))

    @property
    def token(self) -> str:
        return (self.data_dir / "admin_token").read_text().strip()

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        return httpx.request(method, self.base_url + path, headers=headers, timeout=30, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def media_redis(self) -> redis.Redis:
        """The embedded media Redis (its URL, with the password, is in the 0600 runtime record)."""
        return redis.Redis.from_url(json.loads((self.data_dir / "raylive.json").read_text())["media_redis_url"])


def start_raylive(data_dir: Path, timeout_s: float = 180, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> RayliveProcess:
    rtmp_port, http_port = listen_port(), listen_port()
    log_path = data_dir.parent / f"{data_dir.name}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raylive.cli", "up", "--data-dir", str(data_dir), "--host", "127.0.0.1",
             "--rtmp-port", str(rtmp_port), "--http-port", str(http_port), "--no-dashboard", *args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env,
        )  # fmt: skip
    rl = RayliveProcess(proc, data_dir, rtmp_port, http_port, log_path)
    deadline = time.monotonic() + timeout_s
    while "raylive is up" not in rl.log():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_raylive(rl)
            pytest.fail(f"raylive up did not come up:\n{rl.log()[-5000:]}")
        time.sleep(0.2)
    return rl


def stop_raylive(rl: RayliveProcess, timeout_s: float = 30) -> list[str]:
    """SIGTERM raylive, wait, then kill and return whatever it left behind (Ray, Redis, ...)."""
    try:
        family = psutil.Process(rl.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if rl.proc.poll() is None:
        rl.proc.send_signal(signal.SIGTERM)
        try:
            rl.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            rl.proc.kill()
            rl.proc.wait()
    _, alive = psutil.wait_procs(family, timeout=3)
    left = []
    for p in alive:
        try:
            left.append(" ".join(p.cmdline())[:120])
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.fixture(scope="session")
def raylive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayliveProcess]:
    rl = start_raylive(tmp_path_factory.mktemp("raylive") / "data")
    yield rl
    stop_raylive(rl)
