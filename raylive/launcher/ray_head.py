"""A local Ray head that raylive starts (`ray start --head --block`) in its own session.

Its own session keeps a terminal's Ctrl-C (sent to the whole foreground process group) from
killing Ray under raylive's feet: raylive first drains streams, then stops Ray itself, and a
final kill of the session's process group leaves no Ray process behind.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .instance import kill_session
from .redis_server import free_port
from .signals import spawning

DASHBOARD_PORT = 8265  # Ray's default, taken when it is free


class LocalRayHead:
    def __init__(self, log_dir: Path, dashboard: bool) -> None:
        self.log_dir = log_dir
        self.dashboard = dashboard
        self.port = free_port()
        self.dashboard_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dashboard_url(self) -> str | None:
        return f"http://127.0.0.1:{self.dashboard_port}" if self.dashboard else None

    def start(self, timeout_s: float = 60.0, on_spawn: Callable[[int], None] = lambda pid: None) -> str:
        import ray

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.dashboard_port = DASHBOARD_PORT if _port_free(DASHBOARD_PORT) else free_port()
        ray_cli = str(Path(sys.executable).with_name("ray"))
        ray_cli = ray_cli if os.path.exists(ray_cli) else "ray"
        self._ensure_auth_token()
        args = [
            ray_cli,
            "start", "--head", "--block", "--disable-usage-stats",
            "--port", str(self.port),
            f"--include-dashboard={'true' if self.dashboard else 'false'}",
            "--dashboard-host", "127.0.0.1",
            # Ray's fixed default ports (dashboard 8265, client server 10001, dashboard agent
            # 52365) belong to whichever Ray on the host took them first; another Ray's would make
            # this head hang for a minute and die "GCS unavailable". Take free ones.
            "--dashboard-port", str(self.dashboard_port),
            "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
        ]  # fmt: skip
        with open(self.log_dir / "ray-head.log", "ab") as out, spawning():
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=head_environment()
            )
            on_spawn(self.proc.pid)
        address = f"{ray.util.get_node_ip_address()}:{self.port}"
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Ray head exited with {self.proc.returncode}; see {self.log_dir / 'ray-head.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return address
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("Ray head did not start in time") from None
                time.sleep(0.1)

    @staticmethod
    def _ensure_auth_token() -> None:
        """With token auth on, a new head needs a token; `ray start` does not make one (ray.init does)."""
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token" or os.environ.get("RAY_AUTH_TOKEN"):
            return
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
        if path.exists() and path.read_text().strip():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(secrets.token_hex(32))

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes on SIGTERM
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        kill_session(self.proc.pid)  # whatever is left in Ray's session
        self.proc.wait()
        self.proc = None
        # `ray start` recorded our address for later plain `ray.init()` calls; it is gone now.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        try:
            if current.read_text().strip().endswith(f":{self.port}"):
                current.unlink()
        except OSError:
            pass


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# GCS keeps the events of up to 100,000 tasks by default (each claim and release a stream's
# publishes make, 0.68 KB each as protobuf, measured): a cluster that runs for weeks would grow by
# what its streams did. The dashboard's task list keeps the newest 10,000.
TASK_EVENTS_KEPT = 10_000


def head_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_task_events_max_num_task_in_gcs", str(TASK_EVENTS_KEPT))
    return env
