from raylive.runtime.packaging.hls import AudioRendition, MediaPlaylist, PlaylistSegment, VideoVariant, render_multivariant


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
