"""Ingest rates as the live status reports them."""

from __future__ import annotations

from raylive.runtime.ingest import IngestStats


def test_rates_count_from_the_second_push_not_from_the_second_half_second_sample() -> None:
    stats = IngestStats()
    stats.bytes_in, stats.video_frames = 40_000, 7
    stats.sample(100.0)
    assert stats.rates() == (0.0, 0.0)  # one push: nothing to measure yet
    stats.bytes_in, stats.video_frames = 120_000, 15
    stats.sample(100.25)  # not kept as a sample (< 0.5 s), but measured up to
    kbps, fps = stats.rates()
    assert round(kbps) == 2560 and round(fps) == 32
