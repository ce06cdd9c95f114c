"""The DVR playlist and MPD: the live window with the recording's earlier segments before it, through
a publisher's reconnect: the playlist a longer live window would have been, each segment where the
live MPD placed it."""

from __future__ import annotations

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from raylive.runtime.dvr import dvr_mpd, dvr_playlist
from raylive.runtime.ingest import IngestTimeline
from raylive.runtime.packaging.hls import MediaPlaylist, PlaylistSegment
from raylive.runtime.packaging.live import LiveHlsPresentation, StoredFile
from raylive.runtime.recording import Recording, RecordingPlan
from tests.helpers import ffmpeg_publish_messages
from tests.runtime.packaging.test_dash import _segment_walls

pytestmark = pytest.mark.timeout(30)

# Two periods of a stream: 5 segments, a reconnect (new epoch, init and a discontinuity), 5 more.
SEGMENTS = [
    PlaylistSegment(
        f"{epoch}-{n}.m4s", 2.0, 1_800_000_000.0 + 2 * i + (3 if epoch == "bb" else 0), f"init-{epoch}.mp4", epoch == "bb" and n == 0
    )
    for i, (epoch, n) in enumerate([("aa", n) for n in range(5)] + [("bb", n) for n in range(5)])
]


def live_playlist(window: int, segments: list[PlaylistSegment] = SEGMENTS) -> str:
    playlist = MediaPlaylist(window=window)
    for seg in segments:
        playlist.append(PlaylistSegment(seg.uri, seg.duration_s, seg.program_date_time, seg.init_uri, seg.discontinuity))
    return playlist.render()


def recording(segments: list[PlaylistSegment]) -> Recording:
    rec = Recording("20261206T120000Z-abcdef", "cam", SEGMENTS[0].program_date_time)
    for seg in segments:
        rec.add("source", seg, 1000)
    return rec


@pytest.mark.parametrize("older", [1, 2, 3, 4, 7])
def test_the_dvr_playlist_is_the_live_one_with_a_longer_window_across_the_reconnect(older: int) -> None:
    live = live_playlist(3)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in live  # the reconnect's discontinuity slid out of the live window
    dvr = dvr_playlist(live, recording(SEGMENTS), "source", window_s=2.0 * older + 0.5)
    assert dvr == live_playlist(3 + older)
    parsed = m3u8.loads(dvr)
    assert [s.uri for s in parsed.segments] == [s.uri for s in SEGMENTS[-3 - older :]]
    assert [s.discontinuity for s in parsed.segments].count(True) == (older >= 3)


def test_the_dvr_stops_at_a_segment_the_recording_lacks() -> None:
    kept = [s for s in SEGMENTS if s.uri != "aa-3.m4s"]  # lost with a killed actor: the numbering would lie past it
    dvr = dvr_playlist(live_playlist(3), recording(kept), "source", window_s=3600)
    assert [s.uri for s in m3u8.loads(dvr).segments] == [s.uri for s in SEGMENTS[4:]]
    assert dvr == live_playlist(6)


def test_the_dvr_mpd_reaches_back_through_a_reconnect_to_where_each_segment_was_live() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=1, wall_start=1_700_000_000.0, part_ms=200)
    rec = Recording("20231114T221320Z-abcdef", "cam", 1_700_000_000.0)
    plan = RecordingPlan(rec)
    live_walls: dict[str, float] = {}  # each segment's wall time as the live MPDs said while they listed it
    mpds: list[str] = []

    def take(files: list[StoredFile]) -> None:
        for item in plan.plan(files):
            if item.then is not None:
                rec.add(item.then[0], item.then[1], len(item.data), item.dash)
        for f in files:
            if f.path == "index.mpd":
                mpds.append(f.data.decode())
                live_walls.update(_segment_walls(mpds[-1]))

    def publish() -> None:
        timeline = IngestTimeline()
        for m in ffmpeg_publish_messages():
            take(pres.push(timeline.push([(m.type_id, m.timestamp, m.payload)])))

    publish()
    for epoch in ("cd34", "ef56"):  # the publisher reconnected, twice
        take(pres.suspend())
        pres.resume(epoch)
        publish()
    live = mpds[-1]
    assert [p.id for p in MPEGDASHParser.parse(live).periods] == ["ef56"]
    dvr = dvr_mpd(live, rec, window_s=3600)
    assert [p.id for p in MPEGDASHParser.parse(dvr).periods] == ["ab12", "cd34", "ef56"]
    walls = _segment_walls(dvr)
    recorded = {f"{r}/{s['uri']}" for r, segs in rec.segments.items() for s in segs}
    assert recorded and recorded <= set(walls)  # every recorded segment of both periods, numbered as stored
    for uri, wall in walls.items():
        assert wall == pytest.approx(live_walls[uri], abs=0.002), uri
    # A window of 1.5 s: one recorded segment (of about a second) before the live ones, no more.
    short = _segment_walls(dvr_mpd(live, rec, window_s=1.5))
    added = [uri for uri in set(short) - set(_segment_walls(live)) if uri.startswith("source/")]
    assert len(added) == 1, added
