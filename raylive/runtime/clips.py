"""Clips: a span of a recording as one progressive MP4 (moov first: `faststart`), remuxed from the
stored CMAF segments without re-encoding. It starts on the keyframe nearest the asked start and
ends where the GOP nearest the asked end starts, so its duration is within one GOP of the span's.
A span across a publisher's reconnect joins the periods end to end (the gap left out, as in the
recording's playlist) when their codec settings match; a reconnect that changed them cannot be
one MP4 track without re-encoding, and is refused with the reason. Pure: bytes in, bytes out."""

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


Timed = tuple[Fraction, av.Packet]  # (time on the clip's timeline, s; the packet)


def _period_stream(track: Track, kind: str, first: av.stream.Stream | None, opened: list[av.container.InputContainer]) -> av.stream.Stream:
    """The track's video or audio stream, refused when its codec settings are not the first period's."""
    container = av.open(io.BytesIO(track.init + b"".join(track.segments)), mode="r", format="mp4")
    opened.append(container)
    stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
    if first is not None and _settings(stream) != _settings(first):
        raise ValueError(f"the publisher's reconnect changed the {kind}'s codec settings: make a clip on each side of it")
    return stream


def _packets(stream: av.stream.Stream) -> list[Timed]:
    """(presentation time in s, packet) of every packet with a timestamp and data."""
    tb, container = stream.time_base, stream.container
    assert tb is not None and isinstance(container, av.container.InputContainer)
    return [(p.pts * tb, p) for p in container.demux(stream) if p.pts is not None and p.size]


def _shift(p: av.Packet, by: Fraction) -> None:
    ticks = round(by / p.time_base)
    p.pts = (p.pts or 0) + ticks
    if p.dts is not None:
        p.dts += ticks


def _settings(stream: av.stream.Stream) -> tuple[object, ...]:
    ctx = stream.codec_context
    return (ctx.name, bytes(ctx.extradata or b""), getattr(ctx, "width", 0), getattr(ctx, "height", 0), getattr(ctx, "sample_rate", 0))


def _joined(
    video: list[Track], audio: list[Track | None] | None, opened: list[av.container.InputContainer]
) -> tuple[av.stream.Stream, list[Timed], av.stream.Stream | None, list[Timed]]:
    """Every period's packets on one timeline, each period starting where the one before ended."""
    vtemplate: av.stream.Stream | None = None
    atemplate: av.stream.Stream | None = None
    vout: list[Timed] = []
    aout: list[Timed] = []
    at = Fraction(0)  # where this period starts on the clip's timeline
    for k, vtrack in enumerate(video):
        vs = _period_stream(vtrack, "video", vtemplate, opened)
        vtemplate = vtemplate or vs
        vpackets = _packets(vs)
        if not vpackets:
            continue
        origin = vpackets[0][0]
        if vout:  # decoding times must keep rising across the join (B-frames start a period below its pts)
            first_dts = min((p.dts * p.time_base if p.dts is not None else t) for t, p in vpackets) - origin
            last = vout[-1][1]
            last_dts = (last.dts or 0) * last.time_base
            at = max(at, last_dts - first_dts + last.time_base)
        for t, p in vpackets:
            _shift(p, at - origin)
            vout.append((t - origin + at, p))
        if audio is not None and k < len(audio) and (atrack := audio[k]) is not None:
            ast = _period_stream(atrack, "audio", atemplate, opened)
            atemplate = atemplate or ast
            heard = aout[-1][0] + (aout[-1][1].duration or 0) * aout[-1][1].time_base if aout else None
            for t, p in _packets(ast):
                if heard is not None and t - origin + at < heard:
                    continue  # audio the period began with before its first frame, under the last one's tail
                _shift(p, at - origin)
                aout.append((t - origin + at, p))
        tail_t, tail = vout[-1]
        at = tail_t + (tail.duration or 0) * tail.time_base  # where the period's last frame ends
    if vtemplate is None or not vout:
        raise ValueError("the recording has no video in that span")
    return vtemplate, vout, atemplate, aout


def make_clip(video: list[Track], audio: list[Track | None] | None, start_s: float, end_s: float) -> tuple[bytes, float]:
    """The MP4 and its duration. `video`: the periods the span covers, in order; `audio`: each one's
    audio (None: none in that period); `start_s`/`end_s`: media seconds from the first segment's start."""
    opened: list[av.container.InputContainer] = []
    # faststart rewrites the file to move the moov before the media: it needs a real file.
    tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)  # noqa: SIM115 - closed and removed below
    tmp.close()
    try:
        vs, vpackets, ast, apackets = _joined(video, audio, opened)
        keys = [i for i, (t, p) in enumerate(vpackets) if p.is_keyframe]
        # The keyframes nearest the asked instants (the end one is where the next GOP starts, or the end).
        first = min(keys, key=lambda i: abs(float(vpackets[i][0]) - start_s)) if keys else 0
        ends = [i for i in keys if i > first] + [len(vpackets)]
        tail_t, tail = vpackets[-1]
        stop = tail_t + (tail.duration or 0) * tail.time_base  # where the last frame ends
        end_time = lambda i: float(vpackets[i][0] if i < len(vpackets) else stop)  # noqa: E731
        last = min(ends, key=lambda i: abs(end_time(i) - end_s))
        chosen = vpackets[first:last]
        t0 = chosen[0][0]
        t1 = max(t + (p.duration or 0) * p.time_base for t, p in chosen)
        with av.open(tmp.name, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
            ov = out.add_stream_from_template(vs)
            queue: list[tuple[Fraction, int, av.Packet, av.stream.Stream]] = [
                ((p.dts * p.time_base if p.dts is not None else t), i, p, ov) for i, (t, p) in enumerate(chosen)
            ]
            if ast is not None:
                oa = out.add_stream_from_template(ast)
                queue += [(t, len(queue) + i, p, oa) for i, (t, p) in enumerate(apackets) if t0 <= t < t1]
            for _, _, p, stream in sorted(queue, key=lambda q: (q[0], q[1])):
                _shift(p, -t0)
                p.stream = stream
                out.mux(p)
        with open(tmp.name, "rb") as f:
            data = f.read()
    except av.error.FFmpegError as exc:
        raise ValueError(f"the recording's segments did not remux: {exc}") from exc
    finally:
        for container in opened:
            container.close()
        os.unlink(tmp.name)
    return data, float(t1 - t0)
