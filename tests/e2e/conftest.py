"""Fixtures of the end-to-end tests (the shared `raylive up` is in tests/conftest.py)."""

from collections.abc import Iterator

import pytest

import raylive as raylive_api
from raylive.api import Client

from ..conftest import RayliveProcess
from .browser import player_origin

__all__ = ["player_origin", "rl"]


@pytest.fixture(scope="module")
def rl(raylive: RayliveProcess) -> Iterator[Client]:
    """The researchers' API connected to the shared `raylive up` (a Ray driver for the module)."""
    import ray

    client = raylive_api.connect(data_dir=raylive.data_dir)
    yield client
    ray.shutdown()
