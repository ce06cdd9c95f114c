"""The stream actor's consumers of its media: the ABR ladder's transcoder and the processors,
fed from the tap (`taps.py`), and what they send back (rung segments, a processor's frames).
A base of `StreamIngest` (stream.py): these are methods of the stream's one actor."""

from __future__ import annotations

from typing import Any

import ray

from ..runtime.ladder import RungOutput
from ..runtime.packaging.live import LiveHlsPresentation, StoredFile
from .ladder import LadderSupervisor
from .stream_output import StreamOutput
from .taps import MediaTap


class StreamConsumers:
    presentation: LiveHlsPresentation | None
    ladder: LadderSupervisor
    tap: MediaTap
    out: StreamOutput

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def collect_ladder(self) -> None:
        if self.presentation is not None:
            files = self.ladder.collect(self.presentation)
            if files:
                self.out.write(files, self.presentation)

    def _feed_tap(self) -> None:
        assert self.presentation is not None
        items = self.presentation.take_ladder_input()
        self.tap.feed(items, self.presentation.epoch)
        self.ladder.feed(items, self.presentation, self.tap.config)

    def _drain_ladder(self) -> list[StoredFile]:
        """The publisher stopped: the ladder's last segments (bounded wait)."""
        assert self.presentation is not None
        items = self.presentation.take_ladder_input()
        self.tap.feed(items, self.presentation.epoch)
        return self.ladder.drain(items, self.presentation, self.tap.config)

    def subscribe(self, name: str, handle: Any) -> None:
        self.tap.attach(name, handle)

    def unsubscribe(self, name: str) -> None:
        """A processor detached: its output rendition (if it made one) ends; the stream goes on."""
        self.tap.detach(name)
        view = self.presentation.renditions.get(name) if self.presentation is not None else None
        if self.presentation is not None and view is not None and view.view:  # (not a ladder rung of the same name)
            self.out.write(self.presentation.end_rendition(name), self.presentation)

    @ray.method(enable_task_events=False)  # many a second: kept out of GCS and the dashboard
    def processor_output(self, name: str, outputs: list[RungOutput]) -> None:
        """A processor's output frames, encoded and cut where the source was (runtime/frame_out.py)."""
        if self.presentation is not None and name in self.tap.consumers:
            self.out.write(self._add_rung_outputs(outputs, view=True), self.presentation)

    def _add_rung_outputs(self, outputs: list[RungOutput], view: bool = False) -> list[StoredFile]:
        """Rung (or processor output) segments and parts packaged. A rendition whose producer died
        mid-segment goes on in a period of its own (ladder.py, taps.py): the segment it was
        writing is joined from the parts viewers saw, listed before the discontinuity."""
        assert self.presentation is not None
        files: list[StoredFile] = []
        for key, epoch in {o.output.rendition: o.epoch for o in reversed(outputs)}.items():  # each one's first
            r = self.presentation.renditions.get(key)
            if r is not None and r.playlist.open is not None and not r.playlist.open.uri.startswith(epoch + "-"):
                files += self.out.join_open_segment(self.presentation, key)
        return files + self.presentation.add_rung_outputs(outputs, view=view)
