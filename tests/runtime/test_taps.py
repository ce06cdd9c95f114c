"""The tap's per-consumer queue: bounded, skips to the next keyframe when behind, counts what it skipped."""

from __future__ import annotations

from raylive.runtime.ladder import LadderConfig, LadderFrame, LadderInput, LadderPeriod
from raylive.runtime.media import VideoConfig
from raylive.runtime.taps import TapQueue

CONFIG = LadderConfig(VideoConfig(b"avcc"))


def frames(start: int, n: int, keyframe_at: int | None = None) -> list[LadderInput]:
    return [LadderFrame(start + i, 0, i == keyframe_at, b"x", i == keyframe_at) for i in range(n)]


def test_a_new_consumer_starts_at_a_keyframe_with_the_configuration() -> None:
    q = TapQueue(max_in_flight=2)
    assert q.offer(frames(0, 3), "e1", CONFIG) is None  # no keyframe yet
    batch = q.offer(frames(3, 4, keyframe_at=2), "e1", CONFIG)
    assert batch is not None and batch[:2] == [LadderPeriod("e1"), CONFIG]
    assert [f.dts_ms for f in batch[2:] if isinstance(f, LadderFrame)] == [5, 6]
    assert q.take_dropped() == 5 and q.take_dropped() == 0  # 3 + 2 frames before the keyframe


def test_a_consumer_behind_skips_to_the_next_keyframe_in_a_period_of_its_own() -> None:
    q = TapQueue(max_in_flight=2)
    assert q.offer(frames(0, 2, keyframe_at=0), "e1", CONFIG) is not None
    assert q.offer(frames(2, 2), "e1", CONFIG) == frames(2, 2)  # keeping up: items as they are
    assert q.offer(frames(4, 2), "e1", CONFIG) is None  # 2 unanswered: behind
    q.answered(True)
    q.answered(True)
    assert q.offer(frames(6, 2), "e1", CONFIG) is None  # caught up, but waits for a keyframe
    batch = q.offer(frames(8, 2, keyframe_at=1), "e2", CONFIG)
    assert batch is not None and batch[0] == LadderPeriod("e2") and len(batch) == 3
    assert q.dropped_total == 2 + 2 + 1 and q.in_flight == 1


def test_a_failed_batch_means_the_consumer_starts_again_from_a_keyframe() -> None:
    q = TapQueue(max_in_flight=4)
    assert q.offer(frames(0, 2, keyframe_at=0), "e1", CONFIG) is not None
    q.answered(False)  # it restarted: its decoder state is gone
    assert q.offer(frames(2, 2), "e1", CONFIG) is None
    assert q.offer(frames(4, 1, keyframe_at=0), "e1", CONFIG) == [LadderPeriod("e1"), CONFIG, *frames(4, 1, keyframe_at=0)]
    assert q.in_flight == 1


def test_a_dead_consumers_failed_batches_resync_it_once() -> None:
    q = TapQueue(max_in_flight=8)
    for k in range(3):  # three batches out when it dies: each will fail
        assert q.offer(frames(2 * k, 2, keyframe_at=0 if k == 0 else None), "e1", CONFIG) is not None
    q.answered(False)
    resync = q.offer(frames(6, 2, keyframe_at=0), "e1", CONFIG)
    assert resync is not None and resync[0] == LadderPeriod("e1")
    q.answered(False)  # the two sent before the resync fail too: known, no second resync
    q.answered(False)
    assert q.offer(frames(8, 2), "e1", CONFIG) == frames(8, 2)
    q.answered(False)  # the resync batch itself failing is news: again from a keyframe
    assert q.offer(frames(10, 2), "e1", CONFIG) is None
