"""`raylive up` as a script or an impatient operator uses it: act the moment the ports open,
SIGTERM at any moment of startup, `kill -9`, start again, another Ray's dashboard on the host.

Each test starts its own raylives on its own data dirs (startup is what they test).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from raylive.launcher.instance import read_record
from raylive.launcher.redis_server import free_port

from ..helpers import listen_port, publish, wait_for

pytestmark = pytest.mark.e2e

# How many times the port-watching script runs against a fresh `raylive up` (each ≈ 40 s here).
STARTUP_RUNS = int(os.environ.get("RAYLIVE_STARTUP_RUNS", "4"))


class Up:
    """A `raylive up` started as a user would, without waiting for anything."""

    def __init__(self, data_dir: Path, dashboard: bool = False) -> None:
        self.data_dir = data_dir
        self.rtmp_port, self.http_port = listen_port(), listen_port()
        self.log_path = data_dir.parent / f"{data_dir.name}-{time.monotonic_ns()}.log"
        args = [sys.executable, "-m", "raylive.cli", "up", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                "--rtmp-port", str(self.rtmp_port), "--http-port", str(self.http_port)]  # fmt: skip
        if not dashboard:
            args.append("--no-dashboard")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.seen: dict[str, int] = {}  # every child the runtime record listed while we watched

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def watch_record(self) -> None:
        record = read_record(self.data_dir) or {}
        if record.get("pid") == self.proc.pid:
            for what, child in (record.get("children") or {}).items():
                self.seen[what] = child["pid"]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "raylive.cli", *args, "--data-dir", str(self.data_dir)], capture_output=True, text=True, timeout=400
        )

    def wait_exit(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            self.watch_record()
            assert time.monotonic() < deadline, f"raylive up did not exit:\n{self.log()[-3000:]}"
            time.sleep(0.05)

    def leftovers(self, naming_the_data_dir: bool = True) -> list[str]:
        """Live processes of what this `up` started: recorded children and everyone in their sessions,
        and (unless another `up` now uses the data dir) any process naming the data dir."""
        sessions = set(self.seen.values())
        left = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid == os.getpid():
                    continue
                if os.getsid(p.pid) in sessions or (naming_the_data_dir and str(self.data_dir) in cmd):
                    if p.status() != psutil.STATUS_ZOMBIE:
                        left.append(f"{p.pid} {cmd[:100]}")
            except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
                pass
        return left


def ports_open(*ports: int) -> bool:
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return False
    return True


def redis_servers_on(data_dir: Path, role: str = "redis") -> list[int]:
    """Redis rewrites its command line (its process title), but it runs in its --dir (the state
    one in <data-dir>/redis, the media one in <data-dir>/redis-media)."""
    found = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if ("redis" in p.info["name"] or "valkey" in p.info["name"]) and p.cwd() == str(data_dir / role):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def kill_all(up: Up) -> None:
    """Whatever a failed test left: the up and everything it started."""
    up.watch_record()
    with_sessions = [up.proc.pid, *up.seen.values()]
    for pid in with_sessions:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in redis_servers_on(up.data_dir) + redis_servers_on(up.data_dir, "redis-media"):
        os.kill(pid, signal.SIGKILL)


@contextmanager
def cleanup(*ups: Up) -> Iterator[None]:
    try:
        yield
    finally:
        for up in ups:
            kill_all(up)


def test_a_script_that_acts_when_the_ports_open_always_publishes(tmp_path: Path) -> None:
    """The script: wait for the RTMP and HTTP ports, create a key, publish. Every other run ends
    with kill -9, and the next `up` on the same data dir must stop its leftovers and keep its keys."""
    data_dir = tmp_path / "data"
    previous: Up | None = None
    keys: dict[str, str] = {}
    ups: list[Up] = []
    try:
        for run in range(STARTUP_RUNS):
            up = Up(data_dir)
            ups.append(up)
            started = time.monotonic()
            wait_for(lambda u=up: ports_open(u.rtmp_port, u.http_port) or u.proc.poll() is not None, 180, "both ports", 0.05)
            assert up.proc.poll() is None, up.log()[-3000:]
            name = f"script{run}"
            created = up.cli("keys", "create", name)
            assert created.returncode == 0, created.stderr + up.log()[-2000:]
            keys[name] = next(line.split()[1] for line in created.stdout.splitlines() if line.startswith("key:"))
            assert f"rtmp://HOST:{up.rtmp_port}/live/<key>" in created.stderr or f":{up.rtmp_port}/live/<key>" in created.stderr
            # Never a second Redis on the data dir, not even for a moment of the CLI's.
            assert len(redis_servers_on(data_dir)) == 1
            if previous is not None:  # the kill -9'd instance before: nothing of it is left now
                left = previous.leftovers(naming_the_data_dir=False)
                assert left == [], f"left by the killed raylive: {left}"
                previous = None
                to_publish = [name, "script0"]  # a key made before the kill -9 still works
            else:
                to_publish = [name]
            for key_name in to_publish:
                ff = publish(f"rtmp://127.0.0.1:{up.rtmp_port}/live/{keys[key_name]}", seconds=None)
                try:
                    url = f"http://127.0.0.1:{up.http_port}/live/{key_name}/index.m3u8"
                    playing = lambda u=url, f=ff: httpx.get(u, timeout=5).status_code == 200 or f.poll() is not None  # noqa: E731
                    wait_for(playing, 60, f"{key_name} to play", 0.1)
                    assert ff.poll() is None, ff.stderr.read().decode() if ff.stderr else ""
                finally:
                    ff.terminate()
                    ff.wait(10)
            print(f"run {run}: ports -> key -> playing in {time.monotonic() - started:.1f}s")
            if run % 2 == 0:
                up.watch_record()
                assert set(up.seen) == {"redis", "redis_media", "ray_head"}
                up.proc.kill()  # kill -9: Redis and the Ray head live on, in their own sessions
                up.proc.wait()
                assert up.leftovers() != [], "kill -9 left nothing: this test would prove nothing"
                previous = up
            else:
                up.watch_record()
                up.proc.send_signal(signal.SIGTERM)
                up.wait_exit()
                assert up.leftovers() == []
    finally:
        for up in ups:
            kill_all(up)


def test_a_key_made_or_revoked_just_before_redis_is_killed_stays_so(tmp_path: Path) -> None:
    """kill -9 of the state Redis (and of raylive with it) a moment after `keys create` and
    `keys revoke` answered: after the next `up`, the new key publishes and the revoked one is
    refused. (With RDB snapshots every 60 s both were lost: the revoked key worked again.)"""
    data_dir = tmp_path / "data"
    up = Up(data_dir)
    with cleanup(up):
        wait_for(lambda: "raylive is up" in up.log() or up.proc.poll() is not None, 180, "raylive up")
        made = {}
        for name in ("kept", "revoked"):
            out = up.cli("keys", "create", name)
            assert out.returncode == 0, out.stderr
            made[name] = next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("key:"))
        assert up.cli("keys", "revoke", "revoked").returncode == 0
        [state_redis] = redis_servers_on(data_dir)
        os.kill(state_redis, signal.SIGKILL)
        up.watch_record()
        kill_all(up)
    again = Up(data_dir)
    with cleanup(again):
        wait_for(lambda: "raylive is up" in again.log() or again.proc.poll() is not None, 180, "raylive up again")
        assert again.proc.poll() is None, again.log()[-3000:]
        refused = publish(f"rtmp://127.0.0.1:{again.rtmp_port}/live/{made['revoked']}", seconds=5)
        assert refused.wait(30) != 0
        ff = publish(f"rtmp://127.0.0.1:{again.rtmp_port}/live/{made['kept']}", seconds=None)
        try:
            url = f"http://127.0.0.1:{again.http_port}/live/kept/index.m3u8"
            wait_for(lambda: httpx.get(url, timeout=5).status_code == 200 or ff.poll() is not None, 60, "kept to play", 0.1)
            assert ff.poll() is None
        finally:
            ff.terminate()
            ff.wait(10)
        assert httpx.get(f"http://127.0.0.1:{again.http_port}/live/revoked/index.m3u8", timeout=5).status_code == 404


@pytest.mark.parametrize("after_s", [0.5, 2.0, 4.0, 7.0, 11.0])
def test_sigterm_at_any_moment_of_startup_leaves_nothing_running(tmp_path: Path, after_s: float) -> None:
    up = Up(tmp_path / "data")
    with cleanup(up):
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline and up.proc.poll() is None:
            up.watch_record()
            time.sleep(0.02)
        up.proc.send_signal(signal.SIGTERM)
        up.wait_exit()
        left = up.leftovers()
        assert left == [], f"SIGTERM after {after_s}s left: {left}\n{up.log()[-3000:]}"
        assert read_record(up.data_dir) is None or read_record(up.data_dir).get("pid") != up.proc.pid  # type: ignore[union-attr]
        print(f"SIGTERM after {after_s}s: children seen {up.seen}; exit {up.proc.returncode}")


def test_a_second_raylive_on_a_host_whose_dashboard_port_is_taken_comes_up(tmp_path: Path) -> None:
    """Another Ray (here: a plain listener) holds 8265; ours takes another port and says which."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 8265))
        holder.listen()
    except OSError:
        pass  # something else holds it already: the same situation
    up = Up(tmp_path / "data", dashboard=True)
    with cleanup(up):
        started = time.monotonic()
        wait_for(lambda: "raylive is up" in up.log() or up.proc.poll() is not None, 180, "raylive up")
        assert up.proc.poll() is None, up.log()[-3000:]
        line = next(line for line in up.log().splitlines() if "Ray dashboard" in line)
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        assert port != 8265
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{up.http_port}/readyz", timeout=10).json()["ready"] is True
        # A second `up` on the same data dir is refused at once, naming the running one.
        second = up.cli("up", "--no-dashboard", "--rtmp-port", str(free_port()), "--http-port", str(free_port()))
        assert second.returncode == 1 and "another raylive" in second.stderr, second.stderr
        print(f"up with the dashboard on {port} in {time.monotonic() - started:.1f}s")
        up.proc.send_signal(signal.SIGTERM)
        up.wait_exit()
        assert up.leftovers() == []
    holder.close()
