"""Names that several processes must agree on: the Ray namespace and the named actors in it."""

from __future__ import annotations

NAMESPACE = "raylive"
WRITER_NAME = "analytics:writer"  # the one AnalyticsWriter
REGISTRY_NAME = "processors"  # the ProcessorRegistry
WEBHOOKS_NAME = "webhooks"  # the WebhookDispatcher


def actor_name(stream: str) -> str:
    """A stream's StreamIngest (the owner of the live stream)."""
    return f"stream:{stream}:ingest"


def transcoder_name(stream: str) -> str:
    return f"stream:{stream}:transcoder"


def processor_host_name(stream: str, processor: str) -> str:
    return f"stream:{stream}:processor:{processor}"


def gateway_name(node_id: str) -> str:
    """The RTMP gateway of a node (one per node)."""
    return f"gateway:{node_id[:12]}"
