"""A processor's output frames as a rendition: timing, cuts, repeats (runtime/frame_out.py)."""

from __future__ import annotations

import io
from xml.etree import ElementTree

import av
import m3u8
import numpy as np
import pytest

from raylive.runtime.frame_out import ProcessedVideo, output_image
from raylive.runtime.frames import FrameSampler
from raylive.runtime.ingest import IngestTimeline
from raylive.runtime.packaging.cmaf import InitSegment, MediaPart, MediaSegment
from raylive.runtime.packaging.live import LiveHlsPresentation
from tests.helpers import ffmpeg_publish_messages

pytestmark = pytest.mark.timeout(60)
FRAME_MS = 40  # 25 fps: whole milliseconds
SEGMENT_FRAMES = 25  # the source cuts a segment every second
PART_FRAMES = 5


def _source(i: int) -> np.ndarray:
    return np.full((72, 128, 3), 40, np.uint8)


def _boxed(i: int) -> np.ndarray:
    img = _source(i).copy()
    img[10:40, 20:60] = (255, 0, 0)
    return img


def _expect(video: ProcessedVideo, i: int, pending: bool, now: float, first_segment: int = 7) -> None:
    video.expect(i * FRAME_MS, _source(i), i % SEGMENT_FRAMES == 0, i % PART_FRAMES == 0, first_segment + i // SEGMENT_FRAMES, pending, now)


def _decode(init: bytes, segments: list[bytes]) -> list[np.ndarray]:
    with av.open(io.BytesIO(init + b"".join(segments)), format="mp4") as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_every_source_frame_gets_one_output_frame_cut_where_the_source_was() -> None:
    video = ProcessedVideo("boxes", max_delay_s=0.5)
    video.start_period("e1", frame_rate=25, parts=True)
    outputs = []
    for i in range(3 * SEGMENT_FRAMES):
        _expect(video, i, pending=i % 2 == 0, now=0.0)
        if i % 2 == 0:  # the processor answers every other frame; the others repeat its latest
            video.result(i * FRAME_MS, _boxed(i))
        outputs += video.flush(now=0.01)
    outputs += video.finish()
    assert {o.epoch for o in outputs} == {"e1"}
    init = next(o.output for o in outputs if isinstance(o.output, InitSegment))
    assert (init.rendition, init.width, init.height) == ("boxes", 128, 72)
    segments = [o.output for o in outputs if isinstance(o.output, MediaSegment)]
    # Numbered as the source's (first_segment 7), one per source segment, starting at its instants.
    assert [s.index for s in segments] == [7, 8, 9]
    assert [round(s.start_s * 1000) for s in segments] == [0, SEGMENT_FRAMES * FRAME_MS, 2 * SEGMENT_FRAMES * FRAME_MS]
    assert [s.frames for s in segments] == [SEGMENT_FRAMES] * 3
    parts = [o.output for o in outputs if isinstance(o.output, MediaPart)]
    assert [round(p.start_s * 1000) for p in parts if p.segment_index == 8] == [(SEGMENT_FRAMES + k) * FRAME_MS for k in range(0, 25, 5)]
    assert video.stats()["output_frames"] == 3 * SEGMENT_FRAMES and video.repeated == 3 * SEGMENT_FRAMES // 2
    frames = _decode(init.data, [s.data for s in segments])
    assert len(frames) == 3 * SEGMENT_FRAMES
    for f in frames:  # every frame, repeated or not, is the processor's: red where the box is
        assert f[25, 40, 0] > 200 and f[25, 40, 1] < 60 and abs(int(f[60, 100, 0]) - 40) < 12


def test_a_frame_waits_for_the_processor_until_max_delay_then_repeats_the_latest_output() -> None:
    video = ProcessedVideo("slow", max_delay_s=0.5)
    video.start_period("e1", frame_rate=25)
    _expect(video, 0, pending=True, now=10.0)
    assert video.flush(now=10.1) == []  # held: the processor may still answer
    video.result(0, _boxed(0))
    assert video.flush(now=10.2)  # answered: out at once (init segment and the frame)
    _expect(video, 1, pending=True, now=10.2)
    _expect(video, 2, pending=False, now=10.24)  # skipped by the processor: waits behind frame 1
    assert video.flush(now=10.6) == [] and len(video.slots) == 2
    assert not video.overdue(40, now=10.6) and video.overdue(40, now=10.71)  # not worth processing any more
    video.flush(now=10.71)  # frame 1 overdue: both go out as repeats, in order
    assert not video.slots and video.repeated == 2 and video.processed == 1
    video.result(40, _boxed(1))  # the late answer becomes what is repeated next
    assert video.latest is not None and video.stats()["delay_ms_p50"] is not None


def test_before_its_first_output_the_source_frame_stands_in() -> None:
    video = ProcessedVideo("warmup", max_delay_s=0.5)
    video.start_period("e1", frame_rate=25)
    for i in range(SEGMENT_FRAMES):
        _expect(video, i, pending=False, now=0.0)
    outputs = video.flush(now=0.0) + video.finish()
    assert video.passed_through == SEGMENT_FRAMES and video.stats()["repeated"] == SEGMENT_FRAMES
    init = next(o.output for o in outputs if isinstance(o.output, InitSegment))
    seg = next(o.output for o in outputs if isinstance(o.output, MediaSegment))
    assert abs(int(_decode(init.data, [seg.data])[0][25, 40, 0]) - 40) < 12


def test_what_a_processor_returns_is_checked() -> None:
    assert output_image({"mean": 1.0}) is None and output_image(None) is None
    assert output_image(_boxed(0)) is not None
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        output_image(np.zeros((72, 128), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        output_image(np.zeros((72, 128, 3), np.float32))


def test_a_processors_rendition_follows_the_source_and_has_its_own_multivariant_playlist() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=20, wall_start=1_700_000_000.0, ladder=True, part_ms=200)
    video = ProcessedVideo("boxes", max_delay_s=0.5)
    timeline, files = IngestTimeline(), {}
    for m in ffmpeg_publish_messages():
        new = pres.push(timeline.push([(m.type_id, m.timestamp, m.payload)]))
        ended, given = video.push(pres.take_ladder_input(), now=0.0)
        for ts, frame in given:  # the processor answers every frame it is given
            boxed = frame.copy()
            boxed[10:40, 20:60] = (255, 0, 0)
            video.result(round(ts * 1000), boxed)
        new += pres.add_rung_outputs(ended + video.flush(now=0.0), view=True)
        files.update((f.path, f) for f in new)
    files.update((f.path, f) for f in pres.add_rung_outputs(video.finish(), view=True) + pres.finish())
    assert video.processed > 20 and video.repeated == 0

    view = m3u8.loads(files["boxes.m3u8"].data.decode())
    assert [p.uri for p in view.playlists] == ["boxes/index.m3u8"] and [m.uri for m in view.media] == ["audio/index.m3u8"]
    assert "boxes" not in files["index.m3u8"].data.decode() and "boxes" not in files["index.mpd"].data.decode()
    # Its own MPD: its video and the stream's audio, static once the stream ended.
    mpd = ElementTree.fromstring(files["boxes.mpd"].data)
    ns = "{urn:mpeg:dash:schema:mpd:2011}"
    assert mpd.get("type") == "static" and [r.get("id") for r in mpd.iter(f"{ns}Representation")] == ["boxes", "audio"]
    source, boxes = (m3u8.loads(files[f"{r}/index.m3u8"].data.decode()) for r in ("source", "boxes"))
    # Segments of the same names (the source's numbers) and the same durations, to within a frame.
    assert [s.uri for s in boxes.segments] == [s.uri for s in source.segments]
    assert all(abs(a.duration - b.duration) <= 0.034 for a, b in zip(source.segments, boxes.segments, strict=True))
    first = _decode(files["boxes/init-ab12.mp4"].data, [files[f"boxes/{boxes.segments[0].uri}"].data])[0]
    plain = _decode(files["source/init-ab12.mp4"].data, [files[f"source/{source.segments[0].uri}"].data])[0]
    red = lambda f: f[25, 40, 0] > 200 and f[25, 40, 1] < 60  # noqa: E731
    assert red(first) and not red(plain)  # the box is there, not in the source
    h, w = plain.shape[:2]
    assert abs(first[h // 2 :, w // 2 :].astype(int) - plain[h // 2 :, w // 2 :].astype(int)).mean() < 8  # elsewhere the same picture
    assert files["boxes/index.m3u8"].data.decode().rstrip().endswith("#EXT-X-ENDLIST")


def test_a_detached_processors_rendition_ends_and_the_stream_goes_on() -> None:
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, window=20, wall_start=1_700_000_000.0, ladder=True)
    video = ProcessedVideo("gone")
    timeline, files = IngestTimeline(), {}
    messages = ffmpeg_publish_messages()
    for i, m in enumerate(messages):
        new = pres.push(timeline.push([(m.type_id, m.timestamp, m.payload)]))
        if i < len(messages) // 2:
            new += pres.add_rung_outputs(video.push(pres.take_ladder_input(), now=0.0)[0] + video.flush(now=1.0), view=True)
        elif i == len(messages) // 2:
            new += pres.end_rendition("gone")
        files.update((f.path, f) for f in new)
    gone = files["gone/index.m3u8"].data.decode()
    assert gone.rstrip().endswith("#EXT-X-ENDLIST") and "#EXT-X-ENDLIST" not in files["source/index.m3u8"].data.decode()
    assert len(m3u8.loads(files["source/index.m3u8"].data.decode()).segments) > len(m3u8.loads(gone).segments)


def test_a_processor_attached_mid_segment_loses_no_frame_before_the_next_cut() -> None:
    video = ProcessedVideo("late")
    video.start_period("e1", frame_rate=25, parts=True)
    outputs = []
    for i in range(10, 2 * SEGMENT_FRAMES):  # the first frame it sees is not a segment start
        _expect(video, i, pending=False, now=0.0, first_segment=0)
        outputs += video.flush(now=0.0)
    segments = [o.output for o in outputs + video.finish() if isinstance(o.output, MediaSegment)]
    assert [(s.index, round(s.start_s * 1000), s.frames) for s in segments] == [(0, 400, 15), (1, 1000, 25)]


def test_gpu_decoding_falls_back_to_the_cpu_with_one_log_line(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import raylive.runtime.decoding as decoding

    monkeypatch.setattr(decoding, "_nvdec_refused", False)
    pres = LiveHlsPresentation("ab12", target_duration_ms=1000, ladder=True)
    timeline, items = IngestTimeline(), []
    for m in ffmpeg_publish_messages():
        pres.push(timeline.push([(m.type_id, m.timestamp, m.payload)]))
        items += pres.take_ladder_input()
    gpu, cpu = FrameSampler(5, gpu=True), FrameSampler(5)
    frames = gpu.push(items)
    if decoding._nvdec_refused:  # no GPU here: the CPU decoded, and the log says why, once
        assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
        assert "NVDEC decoding unavailable" in caplog.records[0].message
    expected = cpu.push(items)
    assert len(frames) == len(expected) >= 5
    assert all(np.abs(a.astype(int) - b.astype(int)).mean() < 3 for (_, a), (_, b) in zip(frames, expected, strict=True))
