"""Where a running raylive is: the record `raylive up` keeps in its data dir (`raylive.json`:
its state, Ray address, Redis and HTTP), read by the CLI and `raylive.connect()`. The launcher
writes it (`launcher/instance.py`); reading it needs nothing of the launcher's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

RUNTIME_FILE = "raylive.json"
STARTING, UP = "starting", "up"


def runtime_path(data_dir: Path) -> Path:
    return data_dir / RUNTIME_FILE


def read_record(data_dir: Path) -> dict[str, Any] | None:
    """The runtime record as written, whether or not its writer still runs."""
    try:
        info: dict[str, Any] = json.loads(runtime_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return info


def read_runtime(data_dir: Path) -> dict[str, Any] | None:
    """The record of a raylive that is running (starting or up) on this data dir, else None."""
    info = read_record(data_dir)
    if info is None or not alive(info.get("pid"), info.get("pid_started")):
        return None  # left behind by a raylive that is no longer running
    return info


def alive(pid: Any, started: Any) -> bool:
    """Process `pid` runs and is the one started at `started` (a pid is reused after its death)."""
    try:
        proc = psutil.Process(int(pid))
        return proc.status() != psutil.STATUS_ZOMBIE and (started is None or abs(proc.create_time() - float(started)) < 1.0)
    except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError, ValueError):
        return False
