"""What a recording keeps of a stream's files, its VOD playlists, and the retention policy."""

from __future__ import annotations

import m3u8

from raylive.runtime.packaging.hls import MediaPlaylist, PlaylistPart, PlaylistSegment
from raylive.runtime.packaging.live import StoredFile
from raylive.runtime.recording import COMPLETE, RECORDING, Recording, RecordingPlan, expired, recording_id


def _playlist(segments: list[PlaylistSegment], open_part: bool = True) -> StoredFile:
    p = MediaPlaylist(window=6, part_target=0.224)
    for seg in segments:
        p.append(seg)
    if open_part:
        nxt = PlaylistSegment(f"e1-{len(segments)}.m4s", 0, 0, segments[-1].init_uri)
        p.add_part(PlaylistPart(f"e1-{len(segments)}.0.m4s", 0.2, True), nxt, f"e1-{len(segments)}.1.m4s")
    return StoredFile("source/index.m3u8", p.render().encode(), "application/vnd.apple.mpegurl", False)


def _file(path: str, data: bytes = b"x", part: bool = False) -> StoredFile:
    return StoredFile(path, data, "video/mp4", True, part=part)


def test_the_plan_stores_inits_and_listed_segments_never_parts_or_playlists() -> None:
    rec = Recording(recording_id(1_765_000_000, "abcdef"), "cam1", 1_765_000_000)
    plan = RecordingPlan(rec)
    s0 = PlaylistSegment("e1-0.m4s", 2.0, 1_765_000_000, "init-e1.mp4")
    first = plan.plan(
        [_file("source/init-e1.mp4", b"init"), _file("source/e1-0.5.m4s", part=True), _file("source/e1-0.m4s", b"seg0"), _playlist([s0]),
         StoredFile("index.m3u8", b"#EXTM3U\nsource/index.m3u8\n", "application/vnd.apple.mpegurl", False)]
    )  # fmt: skip
    assert [(s.path, s.then is not None) for s in first] == [("source/init-e1.mp4", False), ("source/e1-0.m4s", True)]
    assert rec.multivariant.startswith("#EXTM3U")
    # A segment whose playlist comes in a later batch waits for it; one already stored is not again.
    s1 = PlaylistSegment("e1-1.m4s", 2.0, 1_765_000_002, "init-e1.mp4")
    assert plan.plan([_file("source/e1-1.m4s", b"seg1")]) == []
    later = plan.plan([_playlist([s0, s1])])
    assert [s.path for s in later] == ["source/e1-1.m4s"]


def test_playlists_are_event_while_recording_then_vod_with_the_reconnect_as_a_discontinuity() -> None:
    rec = Recording("20261206T000000Z-abcdef", "cam1", 100.0)
    rec.add("source", PlaylistSegment("e1-0.m4s", 2.0, 100.0, "init-e1.mp4"), 10)
    rec.add("source", PlaylistSegment("e1-1.m4s", 1.5, 102.0, "init-e1.mp4"), 10)
    rec.add("source", PlaylistSegment("e2-2.m4s", 2.0, 110.0, "init-e2.mp4", discontinuity=True), 10)
    live = m3u8.loads(rec.media_playlist("source") or "")
    assert live.playlist_type == "event" and not live.is_endlist
    rec.state = COMPLETE
    text = rec.media_playlist("source") or ""
    vod = m3u8.loads(text)
    assert vod.playlist_type == "vod" and vod.is_endlist and vod.media_sequence == 0
    assert [s.uri for s in vod.segments] == ["e1-0.m4s", "e1-1.m4s", "e2-2.m4s"]
    assert [s.discontinuity for s in vod.segments] == [False, False, True]
    assert text.count("#EXT-X-MAP") == 2 and "#EXT-X-PART" not in text
    assert rec.summary()["duration_s"] == 5.5 and rec.summary()["discontinuities"] == 1 and rec.summary()["bytes"] == 30
    back = Recording.from_index(rec.index_json())  # as stored: the index, and the log in chunks
    assert back.segments == {} and back.summary() == rec.summary()
    for _, chunk in rec.chunks_since(0):
        back.extend(chunk)
    assert back == rec and back.segments == rec.segments
    assert rec.media_playlist("720p") is None


def test_retention_removes_by_age_then_oldest_by_size_never_the_one_being_recorded() -> None:
    def r(i: str, start: float, end: float | None, size: int, state: str = COMPLETE) -> dict[str, object]:
        return {"id": i, "started_at": start, "ended_at": end, "bytes": size, "state": state}

    recs = [r("a", 0, 10, 100), r("b", 100, 110, 100), r("c", 200, 210, 100), r("live", 300, None, 500, RECORDING)]
    assert expired(recs, max_age_s=150, max_bytes=0, now=300) == ["a", "b"]
    assert expired(recs, max_age_s=0, max_bytes=650, now=300) == ["a", "b"]
    assert expired(recs, max_age_s=0, max_bytes=100, now=300) == ["a", "b", "c"]  # the live one stays, whatever its size
    assert expired(recs, max_age_s=0, max_bytes=0, now=300) == []


def test_a_segment_lost_in_flight_leaves_a_discontinuity_not_a_silent_jump() -> None:
    rec = Recording("20261206T000000Z-abcdef", "cam1", 100.0)
    segs = [PlaylistSegment(f"e1-{i}.m4s", 2.0, 100.0 + 2 * i, "init-e1.mp4") for i in range(3)]

    def store(plan: RecordingPlan, files: list[StoredFile]) -> None:  # as the recorder does, once stored
        for s in plan.plan(files):
            if s.then is not None:
                rec.add(*s.then, len(s.data))

    store(RecordingPlan(rec), [_file("source/init-e1.mp4"), _file("source/e1-0.m4s"), _playlist(segs[:1])])
    store(RecordingPlan(rec), [_file("source/e1-2.m4s"), _playlist(segs)])  # restarted: e1-1 was in flight, gone
    assert [(s["uri"], s["disc"]) for s in rec.segments["source"]] == [("e1-0.m4s", False), ("e1-2.m4s", True)]


def test_a_segment_whose_init_never_reached_the_recording_is_not_listed() -> None:
    rec = Recording("20261206T000000Z-abcdef", "cam1", 100.0)
    plan = RecordingPlan(rec)
    seg = PlaylistSegment("e1-0.m4s", 2.0, 100.0, "init-e1.mp4")
    assert plan.plan([_file("source/e1-0.m4s"), _playlist([seg])]) == []  # init-e1.mp4 was written before recording began


def test_the_live_mpd_gives_each_segment_its_dash_timing_and_the_recording_a_static_mpd() -> None:
    from mpegdash.parser import MPEGDASHParser

    from raylive.runtime.packaging.dash import DashPeriod, DashRepresentation, DashSegment, DashTiming, render_mpd

    rep = DashRepresentation("source", False, "avc1.64001f", 2_000_000, 90000, "source/init-e1.mp4", "source/e1-$Number$.m4s", 0,
                             [DashSegment(0, 0, 180000), DashSegment(1, 180000, 180000)], 640, 360, 30.0)  # fmt: skip
    live_mpd = render_mpd([DashPeriod("e1", 0.0, [rep])], DashTiming(100.0, 104.0, 2.0, 12.0)).encode()
    rec = Recording("20261206T000000Z-abcdef", "cam1", 100.0)
    plan = RecordingPlan(rec)
    segs = [PlaylistSegment(f"e1-{i}.m4s", 2.0, 100.0 + 2 * i, "init-e1.mp4") for i in range(2)]
    files = [_file("source/init-e1.mp4"), _file("source/e1-0.m4s"), _file("source/e1-1.m4s"), _playlist(segs)]
    for s in plan.plan([*files, StoredFile("index.mpd", live_mpd, "application/dash+xml", False)]):
        if s.then is not None:
            rec.add(*s.then, len(s.data), s.dash)
    assert [(s["t"], s["d"]) for s in rec.segments["source"]] == [(0, 180000), (180000, 180000)]
    rec.state, rec.ended_at = COMPLETE, 104.0
    mpd = MPEGDASHParser.parse(rec.mpd() or "")
    assert mpd.type == "static" and mpd.media_presentation_duration == "PT4.000S"
    [period] = mpd.periods
    [representation] = period.adaptation_sets[0].representations
    assert (representation.width, representation.codecs) == (640, "avc1.64001f")
    assert representation.segment_templates[0].media == "source/e1-$Number$.m4s"


def test_a_rungs_own_period_in_the_live_mpd_keeps_the_recordings_timing_and_periods() -> None:
    """After a transcoder restart the live MPD has a Period beginning with the rung's own segments
    (id `e1-2`): the recording reads every segment's timing by its name, and its static MPD keeps
    one Period per publish period (the rung's own segments are only in its HLS playlist)."""
    from mpegdash.parser import MPEGDASHParser

    from raylive.runtime.packaging.dash import DashPeriod, DashRepresentation, DashSegment, DashTiming, render_mpd
    from raylive.runtime.recording import _mpd_timing

    def rep(name: str, epoch: str, pto: int, numbers: range, height: int) -> DashRepresentation:
        segments = [DashSegment(n, n * 180000, 180000) for n in numbers]
        return DashRepresentation(name, False, "avc1.64001f", height * 5000, 90000, f"{name}/init-{epoch}.mp4",
                                  f"{name}/{epoch}-$Number$.m4s", pto, segments, height * 16 // 9, height, 30.0)  # fmt: skip

    periods = [
        DashPeriod("e1", 0.0, [rep("source", "e1", 0, range(2), 360), rep("240p", "e1", 0, range(2), 240)]),
        DashPeriod("e1-2", 4.0, [rep("source", "e1", 360000, range(2, 4), 360), rep("240p", "ff00", 360000, range(2, 4), 240)]),
    ]
    rec = Recording("20261206T000000Z-abcdef", "cam1", 100.0)
    found = _mpd_timing(render_mpd(periods, DashTiming(100.0, 108.0, 2.0, 12.0)).encode(), rec.representations)
    assert found["source/e1-3.m4s"] == (540000, 180000) and found["240p/ff00-2.m4s"] == (360000, 180000)
    assert not any("e1-2-" in key for key in found)
    for rendition, names in (("source", ["e1-0", "e1-1", "e1-2", "e1-3"]), ("240p", ["e1-0", "e1-1", "ff00-2", "ff00-3"])):
        for i, name in enumerate(names):
            init = f"init-{name.split('-')[0]}.mp4"
            seg = PlaylistSegment(f"{name}.m4s", 2.0, 100.0 + 2 * i, init, discontinuity=name == "ff00-2")
            rec.add(rendition, seg, 1, found[f"{rendition}/{name}.m4s"])
    rec.state, rec.ended_at = COMPLETE, 108.0
    mpd = MPEGDASHParser.parse(rec.mpd() or "")
    [period] = mpd.periods
    templates = {r.id: r.segment_templates[0] for r in period.adaptation_sets[0].representations}
    counts = {name: sum((s.r or 0) + 1 for s in t.segment_timelines[0].Ss) for name, t in templates.items()}
    assert counts == {"source": 4, "240p": 2}, counts
    assert templates["240p"].media == "240p/e1-$Number$.m4s" and templates["source"].media == "source/e1-$Number$.m4s"
    assert mpd.media_presentation_duration == "PT8.000S"
