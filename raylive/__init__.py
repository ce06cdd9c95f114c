"""raylive: a distributed live-video runtime on Ray. `raylive.connect()` is the researchers' API."""

from __future__ import annotations

from typing import Any

_API = ("connect", "Processor", "Client", "StreamRef", "StreamState", "ProcessorHandle")
_MODELS = ("Model", "model", "ModelHandle")  # models shared by many streams' processors (Ray Serve)


def __getattr__(name: str) -> Any:
    # Lazy: the CLI and the actors import raylive without paying for the client API's imports.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _MODELS:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'raylive' has no attribute {name!r}")
