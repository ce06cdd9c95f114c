"""The ABR ladder on real encoder output: ffmpeg-made FLV sources through ingest, packaging and the
transcoder, each rendition decoded back with PyAV."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest

from raylive.runtime import flv
from raylive.runtime.avc import annexb_to_avcc_sample, avcc_from_annexb, parse_avcc, split_annexb, sps_from_avcc
from raylive.runtime.ingest import IngestTimeline
from raylive.runtime.ladder import PlannedRung, estimate_cpus, plan_ladder
from raylive.runtime.packaging.live import LiveHlsPresentation
from raylive.runtime.transcode import LadderTranscoder, choose_encoder, open_encoder
from raylive.settings import Settings

CATALOGUE = Settings().transcode.renditions
LADDER = ["source", "720p", "480p", "360p"]


def make_flv(path: Path, size: str, seconds: int = 6, extra: tuple[str, ...] = ()) -> bytes:
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac", *extra, "-f", "flv", str(path)],
            check=True, timeout=120,
        )  # fmt: skip
    return path.read_bytes()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ladder-media")


@dataclass
class Run:
    files: dict[str, bytes] = field(default_factory=dict)
    presentation: LiveHlsPresentation | None = None

    def playlist(self, path: str) -> str:
        return self.files[path].decode()

    def segments(self, rendition: str) -> list[str]:
        return [line for line in self.playlist(f"{rendition}/index.m3u8").splitlines() if line.endswith(".m4s")]

    def decode(self, rendition: str, segment: str) -> list[av.VideoFrame]:
        text = self.playlist(f"{rendition}/index.m3u8")
        init = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)[0]
        data = self.files[f"{rendition}/{init}"] + self.files[f"{rendition}/{segment}"]
        with av.open(io.BytesIO(data)) as c:
            return list(c.decode(video=0))


def run_ladder(source: bytes, ladder: list[str] = LADDER, batch: int = 8) -> Run:
    timeline, run = IngestTimeline(), Run()
    pres = LiveHlsPresentation("p1", 2000, 10, ladder=True)
    tx = LadderTranscoder(ladder, CATALOGUE, encoder="x264", preset="ultrafast")
    tags = flv.read_file_tags(source)

    def keep(files: list) -> None:  # type: ignore[type-arg]
        run.files.update({f.path: f.data for f in files})

    for i in range(0, len(tags), batch):
        keep(pres.push(timeline.push(tags[i : i + batch])))
        keep(pres.add_rung_outputs(tx.push(pres.take_ladder_input())))
    keep(pres.add_rung_outputs(tx.push(pres.take_ladder_input()) + tx.finish()))
    keep(pres.finish())
    run.presentation = pres
    return run


def test_plan_never_upscales_and_skips_the_source_height() -> None:
    assert [r.name for r in plan_ladder(LADDER, CATALOGUE, 1920, 1080)] == ["720p", "480p", "360p"]
    assert [(r.name, r.width, r.height) for r in plan_ladder(LADDER, CATALOGUE, 1280, 720)] == [("480p", 854, 480), ("360p", 640, 360)]
    assert plan_ladder(LADDER, CATALOGUE, 640, 360) == []
    # Without the passthrough, the source's own height is encoded; above the source's bitrate is not.
    assert [r.name for r in plan_ladder(["720p", "360p"], CATALOGUE, 1280, 720)] == ["720p", "360p"]
    assert [r.name for r in plan_ladder(LADDER, CATALOGUE, 1280, 720, src_kbps=1000)] == ["360p"]
    # Odd or portrait sources still give even sizes with the source's aspect.
    assert plan_ladder(["360p"], CATALOGUE, 1080, 1920) == [PlannedRung("360p", 202, 360, 800)]


def test_auto_encoder_without_a_gpu_picks_libx264_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="raylive.runtime.transcode"):
        assert choose_encoder("auto", gpu_visible=False) == "libx264"
    assert "using libx264" in caplog.text
    assert choose_encoder("x264", gpu_visible=True) == "libx264"


def test_annexb_helpers_round_trip_real_encoder_headers() -> None:
    enc = open_encoder("libx264", PlannedRung("tiny", 64, 48, 100), 30.0, "ultrafast")
    avcc = avcc_from_annexb(bytes(enc.extradata or b""))
    assert (sps_from_avcc(avcc).width, sps_from_avcc(avcc).height) == (64, 48)
    length_size, sps, pps = parse_avcc(avcc)
    assert length_size == 4 and len(sps) == len(pps) == 1
    assert split_annexb(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x68c") == [b"\x67ab", b"\x68c"]
    assert annexb_to_avcc_sample(b"\x00\x00\x00\x01\x67ab\x00\x00\x01\x65xyz") == b"\x00\x00\x00\x04\x65xyz"


def test_720p_source_gives_aligned_480p_and_360p_rungs(media: Path) -> None:
    run = run_ladder(make_flv(media / "720p.flv", "1280x720"))
    master = run.playlist("index.m3u8")
    variants = dict(re.findall(r"RESOLUTION=(\d+x\d+).*\n(\S+)/index.m3u8", master))
    assert variants == {"1280x720": "source", "854x480": "480p", "640x360": "360p"}, master
    assert 'CODECS="avc1.' in master and "mp4a.40.2" in master and "FRAME-RATE=30.000" in master
    source_segments = run.segments("source")
    assert len(source_segments) >= 3
    for rendition in ("480p", "360p"):
        # Same segment names (epoch and number) as the source: aligned media sequences.
        assert run.segments(rendition) == source_segments
        for seg in source_segments:
            src, rung = run.decode("source", seg), run.decode(rendition, seg)
            assert len(rung) == len(src), (rendition, seg)
            assert abs(rung[0].time - src[0].time) < 1 / 30 + 1e-6  # type: ignore[operator]
            assert (rung[0].width, rung[0].height) == tuple(map(int, {"480p": (854, 480), "360p": (640, 360)}[rendition]))
            assert rung[0].key_frame
    # BANDWIDTH reflects each rung's real bitrate: lower rungs, lower bandwidth.
    bandwidths = [int(b) for b in re.findall(r"BANDWIDTH=(\d+),AVERAGE", master)]
    assert bandwidths[1] > bandwidths[2] > 0
    assert run.playlist("360p/index.m3u8").endswith("#EXT-X-ENDLIST\n")


def test_360p_source_gets_no_upscaled_rung(media: Path) -> None:
    run = run_ladder(make_flv(media / "360p.flv", "640x360", seconds=4))
    assert re.findall(r"RESOLUTION=(\S+?),", run.playlist("index.m3u8")) == ["640x360"]
    assert not any(p.startswith(("480p/", "360p/", "720p/")) for p in run.files)


def test_source_with_b_frames_transcodes_without_timestamp_errors(media: Path) -> None:
    source = make_flv(media / "720p-bf3.flv", "1280x720", extra=("-profile:v", "high", "-bf", "3", "-x264-params", "b-adapt=0"))
    run = run_ladder(source, ["source", "360p"])
    segments = run.segments("360p")
    assert segments == run.segments("source") and len(segments) >= 3
    last = -1.0
    for seg in segments:
        frames = run.decode("360p", seg)
        times = [f.time for f in frames]
        assert times == sorted(times) and times[0] > last  # type: ignore[operator]
        last = times[-1]  # type: ignore[assignment]
    assert sum(len(run.decode("360p", s)) for s in segments) == sum(len(run.decode("source", s)) for s in segments)


def test_a_dropped_rung_ends_its_playlist_and_leaves_the_master(media: Path) -> None:
    source = make_flv(media / "720p.flv", "1280x720")
    timeline = IngestTimeline()
    pres = LiveHlsPresentation("p1", 2000, 10, ladder=True)
    tx = LadderTranscoder(LADDER, CATALOGUE, encoder="x264", preset="ultrafast")
    files: dict[str, bytes] = {}
    tags = flv.read_file_tags(source)
    for i in range(0, len(tags), 8):
        files.update((f.path, f.data) for f in pres.push(timeline.push(tags[i : i + 8])))
        files.update((f.path, f.data) for f in pres.add_rung_outputs(tx.push(pres.take_ladder_input())))
        if i >= len(tags) // 2 and not tx.dropped:
            assert tx.drop_most_expensive() == "480p"
            files.update((f.path, f.data) for f in pres.end_rendition("480p"))
    assert files["480p/index.m3u8"].endswith(b"#EXT-X-ENDLIST\n")
    master = files["index.m3u8"].decode()
    assert "480p/" not in master and "360p/index.m3u8" in master
    assert tx.realtime_factors()["360p"] > 0


def test_cpu_estimate_grows_with_the_ladder() -> None:
    rungs = plan_ladder(LADDER, CATALOGUE, 1920, 1080)
    assert estimate_cpus(rungs, 1920, 1080, 30, 10.0) > estimate_cpus(rungs[1:], 1920, 1080, 30, 10.0) > 0


def test_mp3_audio_is_reencoded_to_aac(media: Path) -> None:
    """`ffmpeg -f flv` sends MP3 by default: the HLS output carries AAC-LC that decodes."""
    source = make_flv(media / "mp3.flv", "320x180", seconds=4, extra=("-c:a", "libmp3lame", "-b:a", "128k"))
    timeline, pres, files = IngestTimeline(), LiveHlsPresentation("p1", 2000, 10), {}
    for tag in flv.read_file_tags(source):
        files.update((f.path, f.data) for f in pres.push(timeline.push([tag])))
    files.update((f.path, f.data) for f in pres.finish())
    assert 'CODECS="avc1.' in files["index.m3u8"].decode() and "mp4a.40.2" in files["index.m3u8"].decode()
    audio = files["audio/index.m3u8"].decode()
    init = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', audio)[0]
    blob = files[f"audio/{init}"] + b"".join(files[f"audio/{s}"] for s in audio.splitlines() if s.endswith(".m4s"))
    with av.open(io.BytesIO(blob)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name == "aac"
        samples = sum(f.samples for f in c.decode(audio=0))
    assert abs(samples / stream.codec_context.sample_rate - 4.0) < 0.2
