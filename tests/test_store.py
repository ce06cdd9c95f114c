"""The typed live status (`store.LiveStatus`): what its writer puts in the hash, its readers get back typed."""

from __future__ import annotations

import pytest

from raylive import store


def test_live_status_round_trips_with_each_fields_type() -> None:
    fields = store.live_fields(
        state="live", started_at=1733400000.25, pid=4242, epoch="00ab12cd", bitrate_kbps=2510.5, keyframe_interval_ms=1000,
        renditions={"source": {"bandwidth": 2_700_000, "average_bandwidth": 2_500_000}}, transcode_realtime_factor={"360p": 3.5},
        resolution="1280x720",
    )  # fmt: skip
    assert all(isinstance(v, str) for v in fields.values())
    raw = {k.encode(): v.encode() for k, v in fields.items()} | {b"peak_viewers": b"7"}
    live = store.read_live(raw)
    assert live.state == "live" and live.epoch == "00ab12cd" and live.resolution == "1280x720"
    assert live.pid == 4242 and isinstance(live.pid, int)
    assert live.started_at == 1733400000.25 and live.keyframe_interval_ms == 1000 and live.peak_viewers == 7
    assert live.renditions == {"source": {"bandwidth": 2_700_000, "average_bandwidth": 2_500_000}}
    assert live.transcode_realtime_factor == {"360p": 3.5}
    assert live.ended_at is None and live.encoder is None


def test_a_name_the_record_does_not_have_is_refused_on_write_and_ignored_on_read() -> None:
    with pytest.raises(KeyError):
        store.live_fields(state="live", colour="blue")
    assert store.read_live({b"state": b"ended", b"colour": b"blue"}).state == "ended"
    assert store.read_live({}).state == "idle"
