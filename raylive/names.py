"""Names that several processes must agree on: the Ray namespace and the named actors in it."""

from __future__ import annotations

NAMESPACE = "raylive"
