import m3u8
import pytest

from raylive.runtime.packaging.hls import (
    AudioRendition,
    MediaPlaylist,
    PlaylistPart,
    PlaylistSegment,
    RenditionReport,
    VideoVariant,
    delta_update,
    is_upcoming_part,
    playlist_edge,
    render_multivariant,
)


def test_sliding_window_advances_media_sequence() -> None:
    pl = MediaPlaylist(window=3, target_duration=2)
    removed = []
    for i in range(5):
        removed += pl.append(PlaylistSegment(f"e-{i}.m4s", 2.0, 1_700_000_000 + 2 * i, "init-e.mp4"))
    assert [s.uri for s in removed] == ["e-0.m4s", "e-1.m4s"]
    text = pl.render()
    assert "#EXT-X-MEDIA-SEQUENCE:2\n" in text
    assert text.count("#EXTINF:2.000,") == 3 and "e-2.m4s\n" in text and "e-4.m4s\n" in text
    assert "#EXT-X-ENDLIST" not in text
    assert text.index("#EXT-X-MAP") < text.index("#EXTINF")
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z" in text
    pl.ended = True
    assert pl.render().endswith("#EXT-X-ENDLIST\n")


def test_target_duration_covers_rounded_extinf_and_never_shrinks() -> None:
    pl = MediaPlaylist(window=2, target_duration=2)
    pl.append(PlaylistSegment("a", 2.4, 0, "i.mp4"))
    assert pl.target_duration == 2  # 2.4 rounds to 2
    pl.append(PlaylistSegment("b", 3.6, 0, "i.mp4"))
    pl.append(PlaylistSegment("c", 2.0, 0, "i.mp4"))
    pl.append(PlaylistSegment("d", 2.0, 0, "i.mp4"))
    assert pl.target_duration == 4 and "#EXT-X-TARGETDURATION:4" in pl.render()


def test_discontinuity_sequence_counts_dropped_discontinuities() -> None:
    pl = MediaPlaylist(window=2)
    pl.append(PlaylistSegment("a", 2, 0, "i.mp4"))
    pl.append(PlaylistSegment("b", 2, 0, "i2.mp4", discontinuity=True))
    text = pl.render()
    assert "#EXT-X-DISCONTINUITY\n" in text and "DISCONTINUITY-SEQUENCE" not in text
    assert text.index('#EXT-X-MAP:URI="i.mp4"') < text.index("#EXT-X-DISCONTINUITY") < text.index('#EXT-X-MAP:URI="i2.mp4"')
    pl.append(PlaylistSegment("c", 2, 0, "i2.mp4"))
    pl.append(PlaylistSegment("d", 2, 0, "i2.mp4"))
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in pl.render() and "#EXT-X-DISCONTINUITY\n" not in pl.render()


def test_multivariant_with_audio_group() -> None:
    v = VideoVariant("source/index.m3u8", 2_000_000, 1_800_000, "avc1.64001f", 1280, 720, 30.0)
    a = AudioRendition("audio/index.m3u8", "audio", "default", "mp4a.40.2", 128_000, 2)
    text = render_multivariant([v], a)
    assert '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio"' in text and 'URI="audio/index.m3u8"' in text
    assert (
        'BANDWIDTH=2128000,AVERAGE-BANDWIDTH=1928000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO="audio"'
        in text
    )
    audio_only = render_multivariant([], a)
    assert '#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS="mp4a.40.2"\naudio/index.m3u8' in audio_only


def _ll_playlist(segments: int, window: int = 20, open_parts: int = 2) -> MediaPlaylist:
    pl = MediaPlaylist(window=window, target_duration=2, part_target=0.224)
    for i in range(segments):
        head = PlaylistSegment(f"e-{i}.m4s", 0.0, 1_700_000_000 + 2 * i, "init-e.mp4")
        for k in range(10):
            pl.add_part(PlaylistPart(f"e-{i}.{k}.m4s", 0.2, k % 5 == 0), head, f"e-{i}.{k + 1}.m4s")
        pl.append(PlaylistSegment(f"e-{i}.m4s", 2.0, 1_700_000_000 + 2 * i, "init-e.mp4"))
        pl.preload_hint = f"e-{i + 1}.0.m4s"
    head = PlaylistSegment(f"e-{segments}.m4s", 0.0, 1_700_000_000 + 2 * segments, "init-e.mp4")
    for k in range(open_parts):
        pl.add_part(PlaylistPart(f"e-{segments}.{k}.m4s", 0.2, k == 0), head, f"e-{segments}.{k + 1}.m4s")
    return pl


def test_ll_playlist_reads_back_in_a_third_party_parser() -> None:
    text = _ll_playlist(8, window=6).render([RenditionReport("../audio/index.m3u8", 8, 1)])
    pl = m3u8.loads(text)
    assert pl.server_control.can_block_reload == "YES" and pl.server_control.part_hold_back == pytest.approx(0.672)
    assert pl.server_control.can_skip_until == pytest.approx(12.0) and pl.server_control.hold_back == pytest.approx(6.0)
    assert pl.part_inf.part_target == pytest.approx(0.224)
    assert pl.media_sequence == 2 and len(pl.segments) == 7  # 6 complete + the one being written
    # Parts are listed for the last 3 target durations (6 s: 3 segments) and the open segment.
    with_parts = [s for s in pl.segments if s.parts]
    assert len(with_parts) == 4 and [p.uri for p in with_parts[-1].parts] == ["e-8.0.m4s", "e-8.1.m4s"]
    assert pl.preload_hint.uri == "e-8.2.m4s" and pl.preload_hint.hint_type == "PART"
    assert [(r.uri, r.last_msn, r.last_part) for r in pl.rendition_reports] == [("../audio/index.m3u8", 8, 1)]
    assert all(p.duration <= pl.part_inf.part_target for s in pl.segments for p in s.parts)


def test_edge_says_what_a_blocking_request_may_be_answered_with() -> None:
    text = _ll_playlist(3, open_parts=2).render()
    edge = playlist_edge(text)
    assert (edge.next_msn, edge.open_parts, edge.ended, edge.target_duration) == (3, 2, False, 2)
    assert edge.part_target == pytest.approx(0.224)
    assert edge.has(2, None) and edge.has(2, 9) and edge.has(3, 0) and edge.has(3, 1)  # the past: at once
    assert not edge.has(3, 2) and not edge.has(3, None) and not edge.has(4, 0)  # held until it exists
    assert not edge.too_far(4) and edge.too_far(5)  # more than two beyond the last segment (2): 400
    assert _ll_playlist(3).edge() == (3, 1) and _ll_playlist(3, open_parts=0).edge() == (2, 9)


def test_delta_update_is_the_full_playlist_less_the_skipped_segments() -> None:
    full = _ll_playlist(12, window=12).render([RenditionReport("../audio/index.m3u8", 12, 1)])
    delta = delta_update(full)
    a, b = m3u8.loads(full), m3u8.loads(delta)
    skipped = b.skip.skipped_segments
    # Everything that ends more than CAN-SKIP-UNTIL (12 s) before the last segment's end goes.
    assert skipped == 12 - 6 and len(b.segments) == len(a.segments) - skipped
    assert [s.uri for s in b.segments] == [s.uri for s in a.segments[skipped:]]
    assert [[p.uri for p in s.parts] for s in b.segments] == [[p.uri for p in s.parts] for s in a.segments[skipped:]]
    assert b.media_sequence == a.media_sequence and b.preload_hint.uri == a.preload_hint.uri
    assert "#EXT-X-VERSION:9" in delta and delta.index("#EXT-X-SKIP") < delta.index('#EXT-X-MAP:URI="init-e.mp4"')
    assert playlist_edge(delta) == playlist_edge(full)
    # A playlist too short to skip anything is answered whole.
    short = _ll_playlist(4, window=6).render()
    assert delta_update(short) == short


def test_a_part_not_written_yet_is_upcoming_an_old_missing_one_is_not() -> None:
    text = _ll_playlist(3, open_parts=2).render()  # e-3.0, e-3.1 listed; e-3.2 hinted
    assert is_upcoming_part(text, "e-3.2.m4s") and is_upcoming_part(text, "e-3.3.m4s") and is_upcoming_part(text, "e-4.0.m4s")
    assert not is_upcoming_part(text, "e-3.1.m4s") and not is_upcoming_part(text, "e-1.4.m4s")
    assert not is_upcoming_part(text, "other-9.0.m4s") and not is_upcoming_part(text, "e-3.m4s")
