"""The live MPD of a presentation's playlists: which DASH Periods there are, where each begins on
the wall clock, and each Representation's segments in them (`render_mpd` writes the XML).

A Period per publish period (its epoch), and one more where a ladder rung's or processor view's
restarted producer begins its own segments (own init and names): a Representation has one init
and one name template.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .dash import DashPeriod, DashRepresentation, DashSegment, DashTiming, render_mpd
from .rendition import Rendition

# Segment starts compared across renditions: a video frame's start is the same up to timestamp
# rounding (1 ms) and 10 ms is well under a frame (33 ms at 30 fps); audio segments begin within an
# AAC frame (≤ 23 ms) of the video's cut.
SPLIT_TOLERANCE_S = 0.010
AUDIO_SLACK_S = 0.1


@dataclass
class _Period:
    """A publish period as DASH sees it: media time 0 of its timeline was at wall time `anchor`,
    and the period starts at its earliest media `first_s` (frozen once an MPD has named it)."""

    anchor: float
    first_s: float
    frozen: bool = False

    @property
    def start(self) -> float:
        return self.anchor + self.first_s


@dataclass(frozen=True, slots=True)
class MpdClock:
    """What the MPD says of time besides its Periods."""

    now: float
    target_s: float  # segment target duration
    window_s: float  # what the playlists keep
    part_s: float  # LL-DASH: a part's duration; 0 without parts
    ended: bool


class LiveMpd:
    def __init__(self) -> None:
        self.periods: dict[str, _Period] = {}  # epoch -> its DASH period, in order
        # A rung's or processor view's own period (its producer restarted) -> the stream's period it
        # is in, and the media time (s) where DASH starts a Period for it.
        self.own_periods: dict[str, str] = {}
        self.splits: dict[str, float] = {}
        self.availability_start = 0.0  # the MPD's availabilityStartTime: the first period's start

    def anchor(self, epoch: str, of_stream: bool, media_start_s: float, wall_start: float, current_epoch: str) -> float:
        """The wall time of media time 0 in `epoch`: the stream's first output in it (`of_stream`:
        source or audio) registers the period; a rung's or view's own period is on the stream's
        clock (`wall_start`) and belongs to the stream's `current_epoch`."""
        period = self.periods.get(epoch)
        if period is None:
            if not of_stream:
                self.own_periods.setdefault(epoch, current_epoch)
                return wall_start
            period = self.periods[epoch] = _Period(wall_start, media_start_s)
        elif not period.frozen and of_stream and media_start_s < period.first_s:
            period.first_s = media_start_s  # audio began before the video's first frame
        return period.anchor

    def snapshot(self) -> dict[str, Any]:
        return {
            "periods": {epoch: [period.anchor, period.first_s] for epoch, period in self.periods.items() if period.frozen},
            "availability_start": self.availability_start,
            "own_periods": self.own_periods,
            "dash_splits": self.splits,
        }

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> LiveMpd:
        mpd = cls()
        mpd.periods = {epoch: _Period(anchor, first_s, frozen=True) for epoch, (anchor, first_s) in snap.get("periods", {}).items()}
        mpd.availability_start = snap.get("availability_start", 0.0)
        mpd.own_periods = dict(snap.get("own_periods", {}))
        mpd.splits = {own: float(t) for own, t in snap.get("dash_splits", {}).items()}
        return mpd

    def render(self, listed: list[Rendition], source: Rendition | None, view: bool, clock: MpdClock) -> str:
        """The MPD of the `listed` renditions (a processor's `view`: its own MPD, which needs its
        video and names nothing new)."""
        periods: list[DashPeriod] = []
        for epoch, period in self.periods.items():
            splits = [(period.first_s, epoch), *self._splits(epoch, listed, source)]
            for index, (begin_s, period_id) in enumerate(splits):
                end_s = splits[index + 1][0] if index + 1 < len(splits) else math.inf
                reps = [rep for r in listed if (rep := self._representation(r, epoch, begin_s, end_s, index == 0, clock)) is not None]
                if not reps or (view and not any(not r.audio for r in reps)):
                    continue
                if not period.frozen and not view:
                    period.frozen = True
                    self.availability_start = self.availability_start or period.start
                periods.append(DashPeriod(period_id, period.start - self.availability_start + begin_s - period.first_s, reps))
        end = max(
            (p.start_s + (s.start + s.duration - r.presentation_time_offset) / r.timescale for p in periods for r in p.representations
             for s in r.segments[-1:]),
            default=0.0,
        )  # fmt: skip
        timing = DashTiming(
            self.availability_start, clock.now, clock.target_s, clock.window_s, clock.part_s, clock.ended, end
        )  # fmt: skip
        return render_mpd(periods, timing)

    def _splits(self, epoch: str, listed: list[Rendition], source: Rendition | None) -> list[tuple[float, str]]:
        """The DASH Periods after the first that stream period `epoch` needs for the `listed`
        renditions: (media seconds, id), one where each restarted producer's segments begin."""
        owns = sorted({seg.uri.partition("-")[0] for r in listed for seg in r.playlist.segments})
        found = {
            t: f"{epoch}-{own}"
            for own in owns
            if self.own_periods.get(own) == epoch and (t := self._split(own, listed, source)) is not None
        }
        return sorted(found.items())

    def _split(self, own: str, listed: list[Rendition], source: Rendition | None) -> float | None:
        """Where DASH starts a Period for `own` (media seconds): at the first of the source's
        segment starts at or after `own`'s first segment begins. A restart mid-segment makes a
        shorter first segment, which DASH leaves out (HLS lists it); a processor late for the
        frame there begins its segment a few frames after the source's (a gap at the Period's
        start, not a lost Period)."""
        if own in self.splits:
            return self.splits[own]
        begins = [seg.start / r.timescale for r in listed for seg in r.playlist.segments if seg.uri.partition("-")[0] == own]
        if source is None or not begins:
            return None
        pl = source.playlist
        of = self.own_periods[own]  # its stream period: the source's starts on the same timeline
        listed_source = [*pl.segments, *([pl.open] if pl.open is not None else [])]
        starts = [seg.start / source.timescale for seg in listed_source if seg.uri.partition("-")[0] == of]
        begin = next((t for t in starts if t >= min(begins) - SPLIT_TOLERANCE_S), None)
        if begin is not None:
            self.splits[own] = begin
        return begin

    def _representation(
        self, r: Rendition, epoch: str, begin_s: float, end_s: float, first: bool, clock: MpdClock
    ) -> DashRepresentation | None:
        """`r`'s segments of stream period `epoch` that begin in [`begin_s`, `end_s`) of its media
        time (the `first` DASH Period of it: all before `end_s`), all named alike: the stream's, or
        the rendition's own after its producer restarted. None when it has none (a rung given up)."""
        if r.dropped:
            return None
        ts = r.timescale
        slack = AUDIO_SLACK_S if r.init.sample_rate else SPLIT_TOLERANCE_S
        listed = [*r.playlist.segments, *([r.playlist.open] if r.playlist.open is not None and not clock.ended else [])]
        named = ""
        segments: list[DashSegment] = []
        for seg in listed:
            seg_epoch, _, number = seg.uri.removesuffix(".m4s").partition("-")
            begins = seg.start / ts
            if not (seg_epoch == epoch or self.own_periods.get(seg_epoch) == epoch) or begins >= end_s - slack:
                continue
            if not first and begins < begin_s - slack:
                continue
            named = named or seg_epoch
            if seg_epoch != named:
                continue
            duration = seg.duration
            if seg is r.playlist.open:  # being written: expected to last as long as the one before
                duration = segments[-1].duration if segments else round(clock.target_s * ts)
            segments.append(DashSegment(int(number), seg.start, duration))
        if not segments:
            return None
        return DashRepresentation(
            r.name, bool(r.init.sample_rate), r.init.codec, max(r.bandwidth, r.average_bps), ts, f"{r.name}/init-{named}.mp4",
            f"{r.name}/{named}-$Number$.m4s", round(begin_s * ts), segments, r.init.width, r.init.height, r.frame_rate,
            r.init.sample_rate, r.init.channels,
        )  # fmt: skip
