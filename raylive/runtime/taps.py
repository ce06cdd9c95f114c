"""The tap: one stream's compressed media fanned out to its consumers, each with its own queue.

What flows is the ladder input of `LiveHlsPresentation.take_ladder_input()`: per period a
`LadderConfig`, then `LadderFrame`s (keyframes start segments). A consumer (the transcoder, a
processor host, later the recorder and part writers) is fed batches it answers one by one; a
`TapQueue` decides, for one consumer, what its next batch is. It keeps at most `max_in_flight`
batches unanswered: past that the consumer is behind, so it skips until the next keyframe and
restarts there in a period of its own (`LadderPeriod` + the configuration + frames), and the
frames it never saw are counted. A slow or dead consumer therefore costs only itself: packaging
of the source never waits for it. Sans-IO: the actor sends the batches and reports answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ladder import LadderConfig, LadderFrame, LadderInput, LadderPeriod


@dataclass
class TapQueue:
    max_in_flight: int
    in_flight: int = 0
    resync: bool = True  # must (re)start from a configuration and a keyframe
    dropped: int = 0  # frames skipped since the last batch sent
    dropped_total: int = 0
    stale: int = 0  # batches sent before the latest resync, still unanswered: their failures are known

    def offer(self, items: list[LadderInput], epoch: str, config: LadderConfig | None) -> list[LadderInput] | None:
        """The batch to send this consumer now, or None (it is behind, or waits for a keyframe).
        `epoch` names the period a resynced consumer starts; `config` is the stream's latest."""
        frames = sum(1 for i in items if isinstance(i, LadderFrame))
        if self.in_flight >= self.max_in_flight:
            self._drop(frames)
            self.resync = True
            return None
        batch = items
        if self.resync:
            key = next((n for n, i in enumerate(items) if isinstance(i, LadderFrame) and i.keyframe), None)
            if key is None or config is None:
                self._drop(frames)
                return None
            self._drop(sum(1 for i in items[:key] if isinstance(i, LadderFrame)))
            batch = [LadderPeriod(epoch), config, *items[key:]]
            self.resync, self.stale = False, self.in_flight
        self.in_flight += 1
        return batch

    def answered(self, ok: bool) -> None:
        """One batch was answered; a failed one (the consumer restarted or raised) means it lost
        its decoder state: it starts again from a keyframe. Answers come in the order the batches
        were sent; a batch sent before the latest resync failing (they all do when the consumer
        died) is what that resync was for, not a reason for another."""
        self.in_flight = max(0, self.in_flight - 1)
        if self.stale:
            self.stale -= 1
        elif not ok:
            self.resync = True

    def take_dropped(self) -> int:
        """Frames skipped since the last call (sent with the next batch, and to metrics)."""
        n, self.dropped = self.dropped, 0
        return n

    def _drop(self, frames: int) -> None:
        self.dropped += frames
        self.dropped_total += frames
