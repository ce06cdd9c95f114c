"""Fixtures of the end-to-end tests (the shared `raylive up` is in tests/conftest.py)."""

from .browser import player_origin

__all__ = ["player_origin"]
