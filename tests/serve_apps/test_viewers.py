"""Viewer session ids: signed for their stream, so only raylive's own can count as viewers."""

from __future__ import annotations

from raylive.serve_apps.viewers import counted_sid, new_sid, valid_sid


def test_a_sid_counts_only_for_the_stream_it_was_made_for() -> None:
    secret = b"s" * 64
    sid = new_sid(secret, "cam1")
    assert valid_sid(sid) == sid and len(sid) == 20
    assert counted_sid(secret, "cam1", sid)
    assert not counted_sid(secret, "cam2", sid)  # another stream's
    assert not counted_sid(b"t" * 64, "cam1", sid)  # another secret's
    assert not counted_sid(secret, "cam1", sid[:-1] + ("A" if sid[-1] != "A" else "B"))
    assert not counted_sid(secret, "cam1", "madeup0001abcdefgh")
    assert not counted_sid(secret, "cam1", None)
