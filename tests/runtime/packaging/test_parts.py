"""LL-HLS parts: cut at the same instants across tracks, within PART-TARGET, and a segment is its parts."""

from __future__ import annotations

import io
import json
import re

import av
import pytest

from raylive.runtime.ingest import IngestTimeline
from raylive.runtime.packaging.cmaf import CmafPackager, Cut, CutClock, MediaPart, MediaSegment, PackagerOutput
from raylive.runtime.packaging.live import LiveHlsPresentation, StoredFile
from tests.helpers import ffmpeg_publish_messages
from tests.runtime.packaging.test_cmaf import ASC, AVCC


def _interleaved(p: CmafPackager, seconds: float, fps: float, gop_s: float = 1.0) -> list[PackagerOutput]:
    """Video at `fps` with a keyframe every `gop_s`, AAC 44.1 kHz, millisecond timestamps interleaved as an FLV muxer sends them."""
    audio_ms = 1024 * 1000 / 44100
    events = [(round(i * 1000 / fps), 0, i % round(gop_s * fps) == 0) for i in range(int(seconds * fps))]
    events += [(round(i * audio_ms), 1, True) for i in range(int(seconds * 1000 / audio_ms))]
    out: list[PackagerOutput] = []
    for ts, kind, key in sorted(events):
        out += p.video_frame(ts, 0, key, b"\x00\x00\x00\x01\x65") if kind == 0 else p.audio_frame(ts, b"\x21")
    return out + p.finish()


@pytest.mark.parametrize(("fps", "nominal_ms"), [(30, 200), (25, 200), (60, 200), (29.97, 200.2), (24, 208.3)])
def test_parts_are_whole_frames_near_the_asked_duration(fps: float, nominal_ms: float) -> None:
    p = CmafPackager(2000, part_ms=200)
    p.video_config(AVCC)
    p.audio_config(ASC)
    out = _interleaved(p, 8.0, fps)
    assert p.nominal_part_s * 1000 == pytest.approx(nominal_ms, abs=1.0)
    part_target = p.nominal_part_s + 1024 / 44100  # what the presentation advertises (rounded up)
    for rendition in ("video", "audio"):
        parts = [o for o in out if isinstance(o, MediaPart) and o.rendition == rendition]
        segments = [o for o in out if isinstance(o, MediaSegment) and o.rendition == rendition]
        assert len(segments) == 4
        for seg in segments:
            own = [q for q in parts if q.segment_index == seg.index]
            assert [q.index for q in own] == list(range(len(own)))
            assert b"".join(q.data for q in own) == seg.data  # a segment is its parts
            assert sum(q.duration_s for q in own) == pytest.approx(seg.duration_s, abs=1e-6)
            for q in own:
                assert q.duration_s <= part_target + 1e-9
                if rendition == "video" and q is not own[-1] and not q.independent:
                    assert q.duration_s >= 0.85 * part_target  # the spec's least, but for the exempt ones
        assert all(q.independent for q in parts) if rendition == "audio" else parts[0].independent


def test_audio_parts_close_with_the_videos_cut_not_a_part_later() -> None:
    """FLV interleaving sends the audio before the video frame that cuts: the audio part is out in
    the same call as the video's, so audio never makes a part wait."""
    p = CmafPackager(2000, part_ms=200)
    p.video_config(AVCC)
    p.audio_config(ASC)
    audio_ms = 1024 * 1000 / 44100
    events = sorted([(round(i * 1000 / 30), 0) for i in range(90)] + [(round(i * audio_ms), 1) for i in range(130)])
    for ts, kind in events:
        out = p.video_frame(ts, 0, ts % 1000 == 0, b"\x00\x00\x00\x01\x65") if kind == 0 else p.audio_frame(ts, b"\x21")
        video = [o for o in out if isinstance(o, MediaPart) and o.rendition == "video"]
        if video:
            audio = [o for o in out if isinstance(o, MediaPart) and o.rendition == "audio"]
            assert len(audio) == 1, ts
            v, a = video[0], audio[0]
            assert abs((a.start_s + a.duration_s) - (v.start_s + v.duration_s)) <= 1024 / 44100


def test_the_gateways_clock_cuts_where_the_packager_does() -> None:
    """The gateway runs the same `CutClock` on the raw RTMP timestamps to flush each part's last
    frame at once; it must agree with the packager frame for frame."""
    p = CmafPackager(2000, part_ms=200)
    p.video_config(AVCC)
    gateway = CutClock(2000, 200)
    for i in range(300):
        ts = round(i * 1000 / 29.97)
        key = i % 30 == 0
        before = p.parts_started
        p.video_frame(ts, 0, key, b"\x00\x00\x00\x01\x65")
        assert (gateway.starts(ts + 123456, key) != Cut.NONE) == (p.parts_started != before), i


def test_a_rung_packager_cuts_where_it_is_told() -> None:
    p = CmafPackager(0, video_rendition="360p", parts=True)
    p.video_config(AVCC)
    out: list[PackagerOutput] = []
    for i in range(60):
        cut = Cut.SEGMENT if i % 30 == 0 else Cut.PART if i % 6 == 0 else Cut.NONE
        out += p.video_frame(i * 33, 0, cut == Cut.SEGMENT, b"\x00\x00\x00\x01\x65", cut=cut)
    out += p.finish()
    parts = [o for o in out if isinstance(o, MediaPart)]
    assert [(q.segment_index, q.index, q.frames) for q in parts] == [(s, k, 6) for s in range(2) for k in range(5)]
    assert [o.index for o in out if isinstance(o, MediaSegment)] == [0, 1]


def _present(part_ms: int = 200) -> tuple[LiveHlsPresentation, dict[str, StoredFile]]:
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=6, wall_start=1_700_000_000.0, part_ms=part_ms)
    tl = IngestTimeline()
    files: dict[str, StoredFile] = {}
    for m in ffmpeg_publish_messages():
        files.update((f.path, f) for f in pres.push(tl.push([(m.type_id, m.timestamp, m.payload)])))
    return pres, files


def test_every_listed_part_is_stored_and_decodes_from_the_init_segment() -> None:
    pres, files = _present()
    text = files["source/index.m3u8"].data.decode()
    listed = [line.split('URI="')[1].split('"')[0] for line in text.splitlines() if line.startswith("#EXT-X-PART:")]
    assert listed and all(files[f"source/{u}"].part for u in listed)
    assert f"PART-TARGET={pres.part_target:.3f}" in text
    # The newest parts, appended to the init segment, decode (what a player joining at a part does).
    independent = max(i for i, line in enumerate(text.splitlines()) if "INDEPENDENT=YES" in line and line.startswith("#EXT-X-PART"))
    tail = [line.split('URI="')[1].split('"')[0] for line in text.splitlines()[independent:] if line.startswith("#EXT-X-PART:")]
    blob = io.BytesIO(files["source/init-ab12.mp4"].data + b"".join(files[f"source/{u}"].data for u in tail))
    with av.open(blob) as container:
        assert len(list(container.decode(video=0))) >= len(tail)


def test_part_target_never_changes_while_the_stream_lasts() -> None:
    pres, files = _present()
    target = pres.part_target
    assert 0.2 < target < 0.25
    pres.suspend()
    pres.resume("cd34")  # the publisher reconnected (its frame rate may differ)
    tl = IngestTimeline()
    for m in ffmpeg_publish_messages():
        files.update((f.path, f) for f in pres.push(tl.push([(m.type_id, m.timestamp, m.payload)])))
    assert pres.part_target == target
    assert f"#EXT-X-PART-INF:PART-TARGET={target:.3f}" in files["source/index.m3u8"].data.decode()
    restored, _ = LiveHlsPresentation.restore(pres.snapshot(), "ef56", ladder=False)
    assert restored.part_target == target


def test_an_ended_playlist_lists_no_parts_nor_a_hint() -> None:
    pres, files = _present()
    files.update((f.path, f) for f in pres.finish())
    text = files["source/index.m3u8"].data.decode()
    assert "#EXT-X-ENDLIST" in text and "#EXT-X-PART:" not in text and "PRELOAD-HINT" not in text


def test_without_parts_nothing_changes() -> None:
    _, files = _present(part_ms=0)
    text = files["source/index.m3u8"].data.decode()
    assert "#EXT-X-PART" not in text and "SERVER-CONTROL" not in text and not any(f.part for f in files.values())


def test_a_restarted_owner_keeps_the_parts_viewers_saw_as_a_complete_segment() -> None:
    """The owner died while a segment was half written (its parts listed): the new owner, from the
    snapshot of the last complete segment and the playlist as last written, lists those parts as
    one shorter complete segment (the parts joined) before the discontinuity."""
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=20, wall_start=1_700_000_000.0, part_ms=200)
    tl = IngestTimeline()
    files: dict[str, StoredFile] = {}
    snapshot = None
    for m in ffmpeg_publish_messages():
        out = pres.push(tl.push([(m.type_id, m.timestamp, m.payload)]))
        files.update((f.path, f) for f in out)
        if any(f.media_end is not None and not f.part for f in out):  # what StreamOutput keeps
            snapshot = json.loads(json.dumps(pres.snapshot()))
    assert snapshot is not None
    playlist = files["source/index.m3u8"].data.decode()
    open_parts = [
        line.split('URI="')[1].split('"')[0] for line in playlist.split("#EXTINF")[-1].splitlines() if line.startswith("#EXT-X-PART:")
    ]
    assert open_parts, "the capture should end mid-segment"
    restored, _ = LiveHlsPresentation.restore(snapshot, "cd34", ladder=False)
    found = restored.recovered_segment("video", playlist)
    assert found is not None
    seg, paths = found
    assert paths == [f"source/{u}" for u in open_parts] and seg.uri == open_parts[0].split(".")[0] + ".m4s"
    data = b"".join(files[p].data for p in paths)
    text = restored.add_recovered("video", seg, len(data))[0].data.decode()
    assert text.count("#EXTINF") == playlist.count("#EXTINF") + 1 and seg.uri in text.splitlines()
    assert seg.duration_s == pytest.approx(sum(float(x) for x in re.findall(r"DURATION=([\d.]+)", playlist.split("#EXTINF")[-1])), abs=1e-4)
    # The joined parts decode as one segment, and what follows comes after a discontinuity.
    with av.open(io.BytesIO(files["source/init-ab12.mp4"].data + data)) as container:
        assert len(list(container.decode(video=0))) >= len(open_parts)
    assert restored.recovered_segment("video", text) is None  # once only
