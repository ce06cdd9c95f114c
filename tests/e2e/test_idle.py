"""What raylive runs with nothing to do: Serve's controller loops at raylive's interval, not Serve's
default 0.1 s (3.7 % of a core idle here; 1.3 % at raylive's 0.5 s)."""

from __future__ import annotations

import psutil
import pytest

from raylive.launcher.up import SERVE_CONTROL_LOOP_INTERVAL_S

from ..conftest import RayliveProcess

pytestmark = pytest.mark.e2e


def test_serves_controller_runs_its_loop_at_raylives_interval(raylive: RayliveProcess) -> None:
    environs = []
    for p in psutil.Process(raylive.proc.pid).children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith("ray::ServeController"):  # ".method" while it runs one
                environs.append(p.environ())
        except psutil.Error:
            pass  # a process that ended meanwhile (a worker of another test's stream)
    assert len(environs) == 1
    assert environs[0].get("RAY_SERVE_CONTROL_LOOP_INTERVAL_S") == SERVE_CONTROL_LOOP_INTERVAL_S
