"""What the stream actor needs when it is not the first to own its stream: a claim while another
gateway may still hold the publisher, and Ray restarting the actor mid-publish."""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from ..runtime.lifecycle import AskHolder
from ..runtime.packaging.live import LiveHlsPresentation
from .stream_output import StreamOutput

HOLDER_CHECK_TIMEOUT_S = 2.0  # asking another gateway whether it still has the stream's publisher


def holder_present(ask: AskHolder) -> bool:
    """Whether the gateway of the stream's holder still has its connection (False when that
    gateway, or its node, is gone or does not answer in time)."""
    try:
        gateway = ray.get_actor(ask.gateway, namespace=ray.get_runtime_context().namespace)
        return bool(ray.get(gateway.holds.remote(ask.token), timeout=HOLDER_CHECK_TIMEOUT_S))
    except (ValueError, RayError, GetTimeoutError):
        return False


def restored_presentation(out: StreamOutput, epoch: str) -> tuple[LiveHlsPresentation, list[Any]] | None:
    """The playlists a restarted owner was writing, continued in period `epoch`, and the codec
    configurations to replay (None when the stream was not live)."""
    snap = out.snapshot()
    if out.status().state not in ("live", "reconnecting") or snap is None:
        return None
    return LiveHlsPresentation.restore(snap, epoch, ladder=True)
