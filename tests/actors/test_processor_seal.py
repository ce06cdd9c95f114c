"""Processor specs kept in Redis are signed with the cluster secret before anything unpickles them."""

from __future__ import annotations

from raylive.actors.processor_registry import open_sealed, seal


def test_only_what_the_secret_signed_is_opened() -> None:
    sealed = seal(b"k" * 32, b"pickled spec")
    assert open_sealed(b"k" * 32, sealed) == b"pickled spec"
    assert open_sealed(b"x" * 32, sealed) is None  # another secret
    assert open_sealed(b"k" * 32, sealed[:-1] + b"!") is None  # tampered
    assert open_sealed(b"k" * 32, b"pickled spec") is None  # unsigned (written before, or forged)
    assert open_sealed(b"k" * 32, b"") is None
