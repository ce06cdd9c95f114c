"""Clips: a span of a recording as one progressive MP4 (moov first: `faststart`), remuxed from the
stored CMAF segments without re-encoding. It starts on the keyframe nearest the asked start and
ends where the GOP nearest the asked end starts, so its duration is within one GOP of the span's.
Pure: bytes in, bytes out."""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.error
import av.stream


@dataclass(frozen=True, slots=True)
class Track:
    """One rendition's init segment and its consecutive media segments (one period)."""

    init: bytes
    segments: list[bytes]


def _packets(container: av.container.InputContainer, stream: av.stream.Stream) -> list[tuple[Fraction, av.Packet]]:
    """(presentation time in s, packet) of every packet with a timestamp and data."""
    tb = stream.time_base
    assert tb is not None
    return [(p.pts * tb, p) for p in container.demux(stream) if p.pts is not None and p.size]


def make_clip(video: Track, audio: Track | None, start_s: float, end_s: float) -> tuple[bytes, float]:
    """The MP4 and its duration. `start_s`/`end_s`: media seconds from the first segment's start."""
    vin = av.open(io.BytesIO(video.init + b"".join(video.segments)), mode="r", format="mp4")
    ain = av.open(io.BytesIO(audio.init + b"".join(audio.segments)), mode="r", format="mp4") if audio else None
    # faststart rewrites the file to move the moov before the media: it needs a real file.
    tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)  # noqa: SIM115 - closed and removed below
    tmp.close()
    try:
        vs = vin.streams.video[0]
        vpackets = _packets(vin, vs)
        if not vpackets:
            raise ValueError("the recording has no video in that span")
        origin = vpackets[0][0]
        keys = [i for i, (t, p) in enumerate(vpackets) if p.is_keyframe]
        # The keyframes nearest the asked instants (the end one is where the next GOP starts, or the end).
        first = min(keys, key=lambda i: abs(float(vpackets[i][0] - origin) - start_s)) if keys else 0
        ends = [i for i in keys if i > first] + [len(vpackets)]
        tail_t, tail = vpackets[-1]
        stop = tail_t + (tail.duration or 0) * (tail.time_base or 0)  # where the last frame ends
        end_time = lambda i: float((vpackets[i][0] if i < len(vpackets) else stop) - origin)  # noqa: E731
        last = min(ends, key=lambda i: abs(end_time(i) - end_s))
        chosen = vpackets[first:last]
        t0 = chosen[0][0]
        t1 = max(t + (p.duration or 0) * p.time_base for t, p in chosen)
        with av.open(tmp.name, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            ov = out.add_stream_from_template(vs)
            queue: list[tuple[Fraction, int, av.Packet, av.stream.Stream]] = [
                ((p.dts * p.time_base if p.dts is not None else t), i, p, ov) for i, (t, p) in enumerate(chosen)
            ]
            if ain is not None:
                ast = ain.streams.audio[0]
                oa = out.add_stream_from_template(ast)
                queue += [(t, len(queue) + i, p, oa) for i, (t, p) in enumerate(_packets(ain, ast)) if t0 <= t < t1]
            for _, _, p, stream in sorted(queue, key=lambda q: (q[0], q[1])):
                shift = int(t0 / p.time_base)
                p.pts = (p.pts or 0) - shift
                if p.dts is not None:
                    p.dts -= shift
                p.stream = stream
                out.mux(p)
        with open(tmp.name, "rb") as f:
            data = f.read()
    except av.error.FFmpegError as exc:
        raise ValueError(f"the recording's segments did not remux: {exc}") from exc
    finally:
        vin.close()
        if ain is not None:
            ain.close()
        os.unlink(tmp.name)
    return data, float(t1 - t0)
