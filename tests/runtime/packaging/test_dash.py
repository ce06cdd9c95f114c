"""MPDs of the same segments HLS lists: read back by a third-party parser (mpegdash), every segment
at the wall time its HLS PROGRAM-DATE-TIME says, periods for reconnects, static at the end."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from mpegdash.parser import MPEGDASHParser

from raylive.runtime import flv
from raylive.runtime.ingest import IngestTimeline
from raylive.runtime.ladder import LadderConfig, LadderFrame, LadderInput, LadderPeriod
from raylive.runtime.packaging.cmaf import VIDEO_TIMESCALE, InitSegment
from raylive.runtime.packaging.hls import MediaPlaylist, PlaylistSegment
from raylive.runtime.packaging.live import LiveHlsPresentation, StoredFile
from raylive.runtime.packaging.live_dash import LiveMpd, MpdClock
from raylive.runtime.packaging.rendition import Rendition
from raylive.runtime.transcode import LadderTranscoder
from tests.helpers import ffmpeg_publish_messages
from tests.runtime.test_transcode import CATALOGUE, make_flv


def _feed(pres: LiveHlsPresentation, files: dict[str, StoredFile]) -> None:
    tl = IngestTimeline()
    for m in ffmpeg_publish_messages():
        files.update((f.path, f) for f in pres.push(tl.push([(m.type_id, m.timestamp, m.payload)])))


def _iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _seconds(duration: str) -> float:
    return float(re.fullmatch(r"PT([\d.]+)S", duration)[1])  # type: ignore[index]


def _segment_walls(mpd_text: str) -> dict[str, float]:
    """'rendition/uri' -> the wall time the MPD says the segment starts at."""
    mpd = MPEGDASHParser.parse(mpd_text)
    ast = _iso(mpd.availability_start_time) if mpd.availability_start_time else 0.0
    out = {}
    for period in mpd.periods:
        for aset in period.adaptation_sets:
            for rep in aset.representations:
                tpl = rep.segment_templates[0]
                number, t = tpl.start_number, None
                for s in tpl.segment_timelines[0].Ss:
                    t = s.t if s.t is not None else t
                    for _ in range((s.r or 0) + 1):
                        uri = tpl.media.replace("$Number$", str(number))
                        out[uri] = ast + _seconds(period.start) + (t - tpl.presentation_time_offset) / tpl.timescale
                        t, number = t + s.d, number + 1
    return out


def _hls_walls(files: dict[str, StoredFile], rendition: str) -> dict[str, float]:
    text = files[f"{rendition}/index.m3u8"].data.decode()
    return {
        f"{rendition}/{uri}": _iso(pdt)
        for pdt, uri in re.findall(r"PROGRAM-DATE-TIME:(\S+)\n(?:#EXT-X-PART[^\n]*\n)*#EXTINF:[^\n]*\n(\S+)", text)
    }


def test_live_mpd_places_every_segment_where_hls_does() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=20, wall_start=1_700_000_000.0, part_ms=200)
    files: dict[str, StoredFile] = {}
    _feed(pres, files)
    text = files["index.mpd"].data.decode()
    mpd = MPEGDASHParser.parse(text)
    assert mpd.type == "dynamic" and _iso(mpd.availability_start_time) == pytest.approx(1_700_000_000.0, abs=0.05)
    assert [a.content_type for a in mpd.periods[0].adaptation_sets] == ["video", "audio"]
    template = mpd.periods[0].adaptation_sets[0].representations[0].segment_templates[0]
    assert template.media == "source/ab12-$Number$.m4s" and template.initialization == "source/init-ab12.mp4"
    assert 0.7 <= template.availability_time_offset <= 0.8  # the segment being written: a part after it began
    walls = _segment_walls(text)
    for rendition in ("source", "audio"):
        hls = _hls_walls(files, rendition)
        assert hls and all(uri in files for uri in hls)
        for uri, wall in hls.items():
            assert walls[uri] == pytest.approx(wall, abs=0.002), uri
    # ... and the segment being written is listed too (LL-DASH), after the complete ones.
    assert len([u for u in walls if u.startswith("source/")]) == len(_hls_walls(files, "source")) + 1


def test_a_reconnect_is_a_new_period_and_the_end_makes_the_mpd_static() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=20, wall_start=1_700_000_000.0, part_ms=200)
    files: dict[str, StoredFile] = {}
    _feed(pres, files)
    files.update((f.path, f) for f in pres.suspend())
    pres.resume("cd34")
    _feed(pres, files)
    live = MPEGDASHParser.parse(files["index.mpd"].data.decode())
    assert [p.id for p in live.periods] == ["ab12", "cd34"]
    first, second = (_seconds(p.start) for p in live.periods)
    assert first == 0.0 and second > 1.0  # the second began when its first frame arrived, later
    files.update((f.path, f) for f in pres.finish())
    text = files["index.mpd"].data.decode()
    ended = MPEGDASHParser.parse(text)
    assert ended.type == "static" and ended.availability_start_time is None and ended.minimum_update_period is None
    assert "availabilityTimeOffset" not in text
    # Every segment of both periods is listed and stored; the presentation lasts until the last one ends.
    walls = _segment_walls(text)
    assert walls and all(uri in files for uri in walls)
    assert sum(1 for u in walls if "/cd34-" in u) >= 2
    assert _seconds(ended.media_presentation_duration) > second


def test_an_unknown_rung_period_is_left_out_of_the_mpd() -> None:
    """A rung's own period (its transcoder restarted) with no segment yet: nothing of it in the MPD,
    and its parts are timed on the stream's clock."""
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=20, wall_start=1_700_000_000.0)
    files: dict[str, StoredFile] = {}
    _feed(pres, files)
    assert "ffff0000" not in files["index.mpd"].data.decode() and pres._period("240p", "ffff0000", 0.0) == pres.wall_start


def test_a_rung_restarted_in_a_period_of_its_own_gets_a_dash_period_of_its_own(tmp_path: Path) -> None:
    """The transcoder dies mid-stream and a new one goes on from the next keyframe with its own
    init and segment names (as HLS lists them, after a discontinuity). A Representation has one
    init and one name template, so the MPD starts a Period where the new rung's segments begin
    with the source's; every segment is where HLS puts it. Before, DASH players of the rung found
    nothing after the restart."""
    tags = flv.read_file_tags(make_flv(tmp_path / "360p.flv", "640x360", seconds=12))
    pres = LiveHlsPresentation("p1", 2000, 10, wall_start=1_700_000_000.0, ladder=True, part_ms=500)
    files: dict[str, StoredFile] = {}
    timeline, tx = IngestTimeline(), LadderTranscoder(["source", "240p"], CATALOGUE, encoder="x264", preset="ultrafast")
    config: LadderConfig | None = None
    resync: list[LadderInput] | None = None  # the new transcoder's: from a keyframe, with the configuration
    for i in range(0, len(tags), 8):
        files.update((f.path, f) for f in pres.push(timeline.push(tags[i : i + 8])))
        items = pres.take_ladder_input()
        config = next((x for x in reversed(items) if isinstance(x, LadderConfig)), config)
        if resync is None and i >= len(tags) * 0.4:
            # The old transcoder's open segment is kept (the actor joins it from the parts viewers saw).
            files.update((f.path, f) for f in pres.add_rung_outputs(tx.finish()))
            tx, resync = LadderTranscoder(["source", "240p"], CATALOGUE, encoder="x264", preset="ultrafast"), []
        if resync is not None and not resync:
            key = next((j for j, x in enumerate(items) if isinstance(x, LadderFrame) and x.keyframe), None)
            if key is None:
                continue  # frames lost with the old transcoder
            assert config is not None
            items = resync = [LadderPeriod("ffff0000"), config, *items[key:]]
        files.update((f.path, f) for f in pres.add_rung_outputs(tx.push(items)))
    live = files["index.mpd"].data.decode()
    mpd = MPEGDASHParser.parse(live)
    assert mpd.type == "dynamic" and [p.id for p in mpd.periods][0] == "p1" and len(mpd.periods) == 2
    templates = {r.id: r.segment_templates[0] for a in mpd.periods[1].adaptation_sets for r in a.representations}
    assert templates["240p"].initialization == "240p/init-ffff0000.mp4" and templates["240p"].media == "240p/ffff0000-$Number$.m4s"
    assert templates["source"].media == "source/p1-$Number$.m4s" and mpd.periods[1].id == "p1-ffff0000"
    walls = _segment_walls(live)
    number = lambda uri: int(uri.rsplit("-", 1)[1].removesuffix(".m4s"))  # noqa: E731
    # Every file the MPD names exists, but for each rendition's segment being written (LL-DASH).
    inits = {r.segment_templates[0].initialization for p in mpd.periods for a in p.adaptation_sets for r in a.representations}
    assert all(uri in files for uri in inits)
    for uri in (u for u in walls if u not in files):
        assert number(uri) == max(number(w) for w in walls if w.split("/")[0] == uri.split("/")[0]), uri
    for rendition in ("source", "audio", "240p"):
        hls = _hls_walls(files, rendition)
        for uri, wall in hls.items():
            if uri in walls:
                assert walls[uri] == pytest.approx(wall, abs=0.002), uri
        missing = sorted(set(hls) - set(walls), key=number)
        # Only the new rung's first segment may be left out: it began mid-segment, at a keyframe.
        own = [u for u in hls if "ffff0000" in u]
        assert missing in ([], own[:1]), (rendition, missing)
        assert rendition != "240p" or len(own) >= 3 and set(own[1:]) <= set(walls)


def _rendition(name: str, starts_s: list[tuple[str, float]], view: bool = False) -> Rendition:
    """A video rendition whose playlist lists segments `(epoch-number, start s)`, 2 s each."""
    pl = MediaPlaylist(window=20, target_duration=2)
    for uri, start in starts_s:
        ticks = round(start * VIDEO_TIMESCALE)
        pl.segments.append(PlaylistSegment(f"{uri}.m4s", 2.0, 1_700_000_000.0 + start, "", start=ticks, duration=2 * VIDEO_TIMESCALE))
    return Rendition(name, InitSegment(name, b"", "avc1.64001f", 1280, 720), "", pl, view=view)


def test_a_processor_late_at_its_restart_keeps_its_period_from_the_source_segment_before_it() -> None:
    """A processor's producer restarts mid-stream (own init and names) and its output lags the
    source by a few frames (it drops frames, never timestamps): its segments begin at 4.1, 6.1 s
    where the source's begin at 4.0, 6.0. The DASH Period of the restart begins with the source's
    segment at 6.0, the first that begins at or after the restarted output's first (4.1: that
    segment began mid-segment and DASH leaves it out); the late output's 6.1 segment is in it (a
    0.1 s gap at its start), not pushed to a later Period or lost."""
    source = _rendition("source", [(f"p1-{n}", 2.0 * (n - 1)) for n in range(1, 6)])
    boxes = _rendition("boxes", [("p1-1", 0.0), ("p1-2", 2.0), ("ffff0000-1", 4.1), ("ffff0000-2", 6.1), ("ffff0000-3", 8.1)], view=True)
    mpd = LiveMpd()
    mpd.anchor("p1", True, 0.0, 1_700_000_000.0, "p1")
    mpd.anchor("ffff0000", False, 4.1, 1_700_000_000.0, "p1")
    clock = MpdClock(1_700_000_011.0, 2.0, 40.0, 0.0, False)
    mpd.render([source], source, False, clock)  # the stream's MPD (the view's own comes after it)
    parsed = MPEGDASHParser.parse(mpd.render([boxes], source, True, clock))
    assert [p.id for p in parsed.periods] == ["p1", "p1-ffff0000"]
    assert _seconds(parsed.periods[1].start) == pytest.approx(6.0)
    walls = _segment_walls(mpd.render([boxes], source, True, clock))
    assert sorted(walls) == ["boxes/ffff0000-2.m4s", "boxes/ffff0000-3.m4s", "boxes/p1-1.m4s", "boxes/p1-2.m4s"]
    # Each segment at its own media time on the stream's clock: the gap is 0.1 s, nothing shifted.
    assert walls["boxes/ffff0000-2.m4s"] == pytest.approx(1_700_000_006.1, abs=0.002)
    assert walls["boxes/p1-2.m4s"] == pytest.approx(1_700_000_002.0, abs=0.002)
    # The split is kept once found: a later render with the first own segment gone says the same.
    for _ in range(3):
        boxes.playlist.segments.popleft()
    again = MPEGDASHParser.parse(mpd.render([boxes], source, True, clock))
    assert [p.id for p in again.periods] == ["p1-ffff0000"] and _seconds(again.periods[0].start) == pytest.approx(6.0)
