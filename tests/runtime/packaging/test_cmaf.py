import io
import json

import av
import pytest

from raylive.runtime.ingest import IngestTimeline
from raylive.runtime.media import VideoConfig
from raylive.runtime.packaging.cmaf import CmafPackager, InitSegment, MediaSegment
from raylive.runtime.packaging.live import LiveHlsPresentation, StoredFile
from tests.helpers import ffmpeg_publish_messages

# A real avcC (640x360 baseline) and AudioSpecificConfig (AAC-LC 44.1 kHz stereo).
AVCC = VideoConfig(bytes.fromhex("0142c01effe100196742c01eda0280bfe5c04400000300040000030078f162ea0100046ce08f20"))
ASC = bytes.fromhex("1210")


def _synthetic(p: CmafPackager, seconds: float, gop_ms: int = 1000, fps: int = 30) -> list[MediaSegment]:
    out = []
    frame_ms = 1000 / fps
    audio_ms = 1024 * 1000 / 44100
    n_video, n_audio = int(seconds * fps), int(seconds * 1000 / audio_ms)
    events = [(round(i * frame_ms), 0, i) for i in range(n_video)] + [(round(i * audio_ms), 1, i) for i in range(n_audio)]
    for ts, kind, _ in sorted(events):  # interleaved by timestamp, as an FLV muxer sends
        if kind == 0:
            out += p.video_frame(ts, 0, ts % gop_ms < frame_ms, b"\x00\x00\x00\x01\x65")
        else:
            out += p.audio_frame(ts, b"\x21")
    out += p.finish()
    return [o for o in out if isinstance(o, MediaSegment)]


def test_segments_cut_at_keyframes_after_target_and_audio_aligned() -> None:
    p = CmafPackager(target_duration_ms=2000)
    inits = p.video_config(AVCC) + p.audio_config(ASC)
    assert [i.rendition for i in inits if isinstance(i, InitSegment)] == ["video", "audio"]
    segs = _synthetic(p, 10.0)
    video = [s for s in segs if s.rendition == "video"]
    audio = [s for s in segs if s.rendition == "audio"]
    assert [s.index for s in video] == list(range(5))
    assert [s.duration_s for s in video] == pytest.approx([2.0] * 5, abs=0.002)
    assert [s.frames for s in video] == [60] * 5
    assert len(audio) == len(video)
    for v, a in zip(video, audio, strict=True):
        assert abs(v.start_s - a.start_s) <= 1024 / 44100  # aligned within one audio frame
    total_audio = sum(s.frames for s in audio)
    assert total_audio == int(10.0 * 44100 / 1024)  # nothing lost


def test_long_gop_makes_longer_segments_never_mid_gop() -> None:
    p = CmafPackager(target_duration_ms=2000)
    p.video_config(AVCC)
    segs = _synthetic(p, 9.0, gop_ms=3000)
    assert [round(s.duration_s, 2) for s in segs if s.rendition == "video"] == [3.0, 3.0, 3.0]


def test_frames_before_first_keyframe_are_dropped() -> None:
    p = CmafPackager(target_duration_ms=1000)
    p.video_config(AVCC)
    assert p.video_frame(0, 0, False, b"x") == []
    p.video_frame(33, 0, True, b"k")
    [seg] = p.finish()
    assert isinstance(seg, MediaSegment) and seg.frames == 1 and seg.start_s == pytest.approx(0.033, abs=1e-3)


def _run_fixture(target_ms: int) -> tuple[LiveHlsPresentation, dict[str, StoredFile]]:
    pres = LiveHlsPresentation("ab12", target_duration_ms=target_ms, window=6, wall_start=1_700_000_000.0)
    tl = IngestTimeline()
    files: dict[str, StoredFile] = {}
    for m in ffmpeg_publish_messages():
        for f in pres.push(tl.push([(m.type_id, m.timestamp, m.payload)])):
            files[f.path] = f
    for f in pres.finish():
        files[f.path] = f
    return pres, files


def test_real_capture_packages_into_decodable_cmaf() -> None:
    _, files = _run_fixture(target_ms=500)
    for rendition, codec in (("source", "h264"), ("audio", "aac")):
        init = files[f"{rendition}/init-ab12.mp4"].data
        segs = sorted((p for p in files if p.startswith(f"{rendition}/ab12-")), key=lambda p: int(p.rsplit("-", 1)[1][:-4]))
        assert len(segs) >= 2
        blob = io.BytesIO(init + b"".join(files[p].data for p in segs))
        with av.open(blob) as container:
            stream = container.streams[0]
            assert stream.codec_context.name == codec
            frames = list(container.decode(stream))
        pts = [f.pts for f in frames]
        assert pts == sorted(pts) and len(frames) > 10
        if codec == "h264":
            assert (frames[0].width, frames[0].height) == (160, 96)
            assert len(frames) == sum(1 for m in ffmpeg_publish_messages() if m.type_id == 9 and m.payload[1] == 1)


def test_playlists_of_real_capture() -> None:
    pres, files = _run_fixture(target_ms=500)
    media = files["source/index.m3u8"].data.decode()
    assert media.startswith("#EXTM3U\n") and media.rstrip().endswith("#EXT-X-ENDLIST")
    assert '#EXT-X-MAP:URI="init-ab12.mp4"' in media and "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20" in media
    master = files["index.m3u8"].data.decode()
    assert 'CODECS="avc1.42c00a,mp4a.40.2"' in master
    assert "RESOLUTION=160x96" in master and 'AUDIO="audio"' in master and "FRAME-RATE=15.000" in master
    assert "audio/index.m3u8" in master
    assert set(pres.retained_paths()) <= set(files)
    # What is written once per period and must outlive the segment TTL while a playlist names it.
    assert set(pres.long_lived_paths()) == {"index.m3u8", "source/init-ab12.mp4", "audio/init-ab12.mp4"}


def test_reconnect_continues_playlists_after_a_discontinuity() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=500, window=20, wall_start=1_700_000_000.0)
    files: dict[str, StoredFile] = {}

    def feed() -> None:
        tl = IngestTimeline()
        for m in ffmpeg_publish_messages():
            for f in pres.push(tl.push([(m.type_id, m.timestamp, m.payload)])):
                files[f.path] = f

    feed()
    for f in pres.suspend():  # publisher dropped
        files[f.path] = f
    before = files["source/index.m3u8"].data.decode()
    assert "#EXT-X-ENDLIST" not in before and "ab12-" in before
    pres.resume("cd34")
    feed()
    for f in pres.finish():
        files[f.path] = f
    text = files["source/index.m3u8"].data.decode()
    lines = text.splitlines()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1 and "#EXT-X-MEDIA-SEQUENCE:0" in text
    first_map, second_map = lines.index('#EXT-X-MAP:URI="init-ab12.mp4"'), lines.index('#EXT-X-MAP:URI="init-cd34.mp4"')
    assert first_map < lines.index("#EXT-X-DISCONTINUITY") < second_map
    segs = [line for line in lines if line.endswith(".m4s")]
    assert segs[0].startswith("ab12-") and segs[-1].startswith("cd34-") and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert {"source/init-ab12.mp4", "source/init-cd34.mp4"} <= set(pres.retained_paths())


def test_resolution_change_mid_stream_starts_a_new_period() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=500, window=20, wall_start=1_700_000_000.0)
    tl = IngestTimeline()
    files: dict[str, StoredFile] = {}
    small = ffmpeg_publish_messages()
    offset = small[-1].timestamp + 100
    # One connection whose encoder switches from 160x96 to 320x180 (timestamps carry on).
    large = [(m.type_id, m.timestamp + offset, m.payload) for m in ffmpeg_publish_messages("ffmpeg_publish_320x180.bin")]
    for msg in [(m.type_id, m.timestamp, m.payload) for m in small] + large:
        for f in pres.push(tl.push([msg])):
            files[f.path] = f
    for f in pres.finish():
        files[f.path] = f
    text = files["source/index.m3u8"].data.decode()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1 and text.count("#EXT-X-MAP:") == 2
    assert "RESOLUTION=320x180" in files["index.m3u8"].data.decode()
    # Each period decodes with its own init segment, at its own size.
    lines = text.splitlines()
    split = lines.index("#EXT-X-DISCONTINUITY")
    for part, size in ((lines[:split], (160, 96)), (lines[split:], (320, 180))):
        init = next(line.split('"')[1] for line in part if line.startswith("#EXT-X-MAP"))
        segs = [line for line in part if line.endswith(".m4s")]
        blob = io.BytesIO(files[f"source/{init}"].data + b"".join(files[f"source/{s}"].data for s in segs))
        with av.open(blob) as container:
            frames = list(container.decode(video=0))
        assert frames and (frames[0].width, frames[0].height) == size


def test_a_restarted_owner_continues_the_playlists_from_a_snapshot() -> None:
    """The stream actor died mid-publish: a new one restores the playlists from the JSON snapshot
    and continues the same connection's media (no sequence headers resent) after a discontinuity."""
    msgs = [(m.type_id, m.timestamp, m.payload) for m in ffmpeg_publish_messages()]
    pres = LiveHlsPresentation("ab12", target_duration_ms=500, window=20, wall_start=1_700_000_000.0)
    files: dict[str, StoredFile] = {}
    tl = IngestTimeline()
    for m in msgs:
        files.update((f.path, f) for f in pres.push(tl.push([m])))
    before = files["source/index.m3u8"].data.decode()
    snap = json.loads(json.dumps(pres.snapshot()))
    restored, replay = LiveHlsPresentation.restore(snap, "cd34", ladder=False)
    files.update((f.path, f) for f in restored.push(replay))
    tl2 = IngestTimeline()  # the new actor's timeline: the rest carries no sequence headers
    for m in msgs:  # more of the same media
        if m[0] in (8, 9) and m[2][1:2] == b"\x00":
            continue
        files.update((f.path, f) for f in restored.push(tl2.push([m])))
    files.update((f.path, f) for f in restored.finish())
    text = files["source/index.m3u8"].data.decode()
    old = [line for line in before.splitlines() if line.endswith(".m4s")]
    new = [line for line in text.splitlines() if line.endswith(".m4s")]
    assert new[: len(old)] == old and any(s.startswith("cd34-") for s in new)
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1 and '#EXT-X-MAP:URI="init-cd34.mp4"' in text
    assert "#EXT-X-MEDIA-SEQUENCE:0" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert "RESOLUTION=160x96" in files["index.m3u8"].data.decode()
    # The new period decodes on its own init segment.
    segs = [s for s in new if s.startswith("cd34-")]
    blob = io.BytesIO(files["source/init-cd34.mp4"].data + b"".join(files[f"source/{s}"].data for s in segs))
    with av.open(blob) as container:
        assert len(list(container.decode(video=0))) > 0
