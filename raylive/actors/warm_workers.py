"""`WarmWorkers`: Ray worker processes kept started on this node for the next streams' actors.

Each stream actor is a process of its own, and starting one costs ≈ 0.56 CPU-s before any of our
code runs (measured: `ray::IDLE` workers, 2 cores). Fifty publishers that connect in the same
second waited 51 s for their last playlist. Ray hands an actor an idle worker of its job when it
has one, and its raylet starts such workers on request (`PrestartWorkers`, the call Ray makes
itself for a task backlog; Python has no API for it, so we send it as Ray's own clients do). The
gateway keeps `count` of them idle on its node; they stay until used (a day's keep-alive), so an
idle server starts none. A worker that ran a task is never given to an actor: these run nothing.
"""

from __future__ import annotations

import logging
import os
import time

import psutil
import ray
from ray._private.grpc_utils import init_grpc_channel
from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc

log = logging.getLogger(__name__)
KEEP_ALIVE_S = 24 * 3600
JOB_CHECK_S = 30.0
IDLE_TITLE = "ray::IDLE"
STARTING_SCRIPT = "default_worker.py"  # a worker before it names itself


class WarmWorkers:
    def __init__(self, count: int) -> None:
        self.count = count
        ctx = ray.get_runtime_context()
        self.job_id = bytes.fromhex(ctx.get_job_id())  # an actor only takes a worker of its own job
        node = next(n for n in ray.nodes() if n["NodeID"] == ctx.get_node_id())
        self.raylet = psutil.Process(os.getppid())  # workers are the raylet's children
        self.stub = node_manager_pb2_grpc.NodeManagerServiceStub(
            init_grpc_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}")
        )
        self._job_checked_at = -JOB_CHECK_S
        self._job_alive_at_check = True

    def _job_alive(self) -> bool:
        """Workers are started for a job: once the driver that created this gateway has gone
        (`raylive gateway` exits after starting it), warming would only start processes that
        no actor of a live job may take. Asked of the GCS at most every JOB_CHECK_S."""
        now = time.monotonic()
        if now - self._job_checked_at >= JOB_CHECK_S:
            self._job_checked_at = now
            gcs = ray._private.worker.global_worker.gcs_client  # type: ignore[attr-defined] # set when the worker connects
            jobs = gcs.get_all_job_info(skip_submission_job_info_field=True, skip_is_running_tasks_field=True)
            self._job_alive_at_check = any(j.job_id == self.job_id and not j.is_dead for j in jobs.values())
            if not self._job_alive_at_check:
                log.info("warm workers: the job that started this gateway has ended; none are kept")
        return self._job_alive_at_check

    def idle(self) -> int:
        """Workers of this node's raylet that run nothing (any job's: the raylet does not say), or
        are still starting: counting only the started ones asked again for those on the way, and
        a pool of 50 grew to 98 processes while they started."""
        n = 0
        for p in self.raylet.children():
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            n += cmd[:1] == [IDLE_TITLE] or any(arg.endswith(STARTING_SCRIPT) for arg in cmd[1:3])
        return n

    def top_up(self) -> int:
        """Ask the raylet for the workers missing; it starts at most its startup concurrency (the
        node's CPUs) per call, so the pool fills over a few calls. Returns how many were asked."""
        missing = self.count - self.idle()
        if missing <= 0 or not self._job_alive():
            return 0
        request = node_manager_pb2.PrestartWorkersRequest(  # type: ignore[attr-defined] # generated, no stubs
            language=common_pb2.PYTHON,  # type: ignore[attr-defined]
            job_id=self.job_id,
            keep_alive_duration_secs=KEEP_ALIVE_S,
            num_workers=missing,
        )
        self.stub.PrestartWorkers(request, timeout=10)
        return missing
