"""Names that several processes must agree on: the Ray namespace and the named actors in it."""

from __future__ import annotations

NAMESPACE = "raylive"


def gateway_name(node_id: str) -> str:
    """The RTMP gateway of a node (one per node)."""
    return f"gateway:{node_id[:12]}"
