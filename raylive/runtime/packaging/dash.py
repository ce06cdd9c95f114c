"""MPEG-DASH (ISO/IEC 23009-1) MPDs for the same CMAF init and media segments that HLS lists.

One Period per publish period (a reconnect or codec change starts one, as `EXT-X-DISCONTINUITY`
does in HLS; so does a rung or processor view whose producer restarted with its own init and
segment names), one AdaptationSet for the video renditions and one for audio, a `SegmentTemplate`
per Representation with `$Number$` (the segment names) and a `SegmentTimeline` (segments are cut
at keyframes, so their durations vary). Live: a dynamic MPD with the segments in the window; with
parts (LL-DASH), each template says the segment being written is available a part after it began
(`availabilityTimeOffset`) and lists it with its expected duration, and the server streams it
part by part. Once the stream ends the MPD is static. Pure: data in, text out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import quoteattr

# Replaced by the playback server with the absolute URL of its clock (`UTCTiming`): players on
# another origin need one, and only the server answering the request knows its own address.
UTC_TIMING_URL = "{{utc-timing-url}}"
MPD_TYPE = "application/dash+xml"


@dataclass(frozen=True, slots=True)
class DashSegment:
    number: int
    start: int  # earliest presentation time, in the representation's timescale
    duration: int


@dataclass(frozen=True, slots=True)
class DashRepresentation:
    id: str  # the rendition's directory: source, 480p, audio...
    audio: bool
    codecs: str
    bandwidth: int
    timescale: int
    initialization: str  # relative to the MPD
    media: str  # with $Number$
    presentation_time_offset: int
    segments: list[DashSegment]
    width: int = 0
    height: int = 0
    frame_rate: float = 0.0
    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True, slots=True)
class DashPeriod:
    id: str
    start_s: float  # from availabilityStartTime (dynamic) or the first period (static)
    representations: list[DashRepresentation]


@dataclass(frozen=True, slots=True)
class DashTiming:
    availability_start: float  # unix seconds
    now: float
    target_duration_s: float
    window_s: float
    part_s: float = 0.0  # LL-DASH: the part (chunk) duration; 0: whole segments only
    ended: bool = False
    duration_s: float = 0.0  # static: the presentation's duration


def render_mpd(periods: list[DashPeriod], t: DashTiming) -> str:
    ll = t.part_s > 0 and not t.ended
    attrs: dict[str, object] = {
        "xmlns": "urn:mpeg:dash:schema:mpd:2011",
        "profiles": "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019",
        "minBufferTime": _duration(min(t.target_duration_s, 1.0)),
        "maxSegmentDuration": _duration(_longest(periods, t.target_duration_s)),
    }
    if t.ended:
        attrs |= {"type": "static", "mediaPresentationDuration": _duration(t.duration_s)}
    else:
        attrs |= {
            "type": "dynamic",
            "availabilityStartTime": _iso(t.availability_start),
            "publishTime": _iso(t.now),
            # Half a segment: a player learns of a new segment well before it needs it.
            "minimumUpdatePeriod": _duration(t.target_duration_s / 2),
            "timeShiftBufferDepth": _duration(t.window_s),
            "suggestedPresentationDelay": _duration(3 * t.part_s if ll else 3 * t.target_duration_s),
        }
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', f"<MPD{_attrs(attrs)}>"]
    if ll:
        # DASH-IF low-latency: the latency players aim at (ms), and how far they may speed up to keep it.
        target_ms = round(1000 * (3 * t.part_s + t.part_s))
        lines.append(f'  <ServiceDescription id="0"><Latency target="{target_ms}" min="{target_ms // 2}" max="{target_ms * 3}"/>')
        lines.append('    <PlaybackRate min="0.96" max="1.04"/></ServiceDescription>')
    for period in periods:
        lines.append(f'  <Period id="{period.id}" start="{_duration(period.start_s)}">')
        video = [r for r in period.representations if not r.audio]
        audio = [r for r in period.representations if r.audio]
        for index, (group, kind) in enumerate(((video, "video"), (audio, "audio"))):
            if not group:
                continue
            lines.append(
                f'    <AdaptationSet id="{index}" contentType="{kind}" mimeType="{kind}/mp4" segmentAlignment="true" startWithSAP="1">'
            )
            for rep in sorted(group, key=lambda r: -r.bandwidth):
                lines += _representation(rep, t, ll)
            lines.append("    </AdaptationSet>")
        lines.append("  </Period>")
    lines.append(f'  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-iso:2014" value="{UTC_TIMING_URL}"/>')
    lines.append("</MPD>")
    return "\n".join(lines) + "\n"


def _representation(rep: DashRepresentation, t: DashTiming, ll: bool) -> list[str]:
    attrs: dict[str, object] = {"id": rep.id, "bandwidth": max(1, rep.bandwidth), "codecs": rep.codecs}
    if rep.audio:
        attrs["audioSamplingRate"] = rep.sample_rate
    else:
        attrs |= {"width": rep.width, "height": rep.height}
        if rep.frame_rate:
            attrs["frameRate"] = _frame_rate(rep.frame_rate)
    out = [f"      <Representation{_attrs(attrs)}>"]
    if rep.audio:
        out.append(
            '        <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" '
            f'value="{rep.channels}"/>'
        )
    template = {
        "timescale": rep.timescale,
        "presentationTimeOffset": rep.presentation_time_offset,
        "initialization": rep.initialization,
        "media": rep.media,
        "startNumber": rep.segments[0].number if rep.segments else 0,
    }
    if ll:
        # The segment being written is available one part after it starts: players fetch it then and
        # get its parts as they are made (chunked transfer).
        template |= {"availabilityTimeOffset": f"{max(0.0, t.target_duration_s - t.part_s):.3f}", "availabilityTimeComplete": "false"}
    out.append(f"        <SegmentTemplate{_attrs(template)}>")
    out.append("          <SegmentTimeline>")
    out += [f"            {s}" for s in _timeline(rep.segments)]
    out += ["          </SegmentTimeline>", "        </SegmentTemplate>", "      </Representation>"]
    return out


def _timeline(segments: list[DashSegment]) -> list[str]:
    """`S` elements: `t` where a segment does not follow on from the one before, `r` for repeats."""
    runs: list[list[int]] = []  # [t or -1, d, r]
    end = None
    for s in segments:
        if runs and s.start == end and runs[-1][1] == s.duration:
            runs[-1][2] += 1
        else:
            runs.append([s.start if s.start != end else -1, s.duration, 0])
        end = s.start + s.duration
    out = []
    for start, d, r in runs:
        attrs = (f't="{start}" ' if start >= 0 else "") + f'd="{d}"' + (f' r="{r}"' if r else "")
        out.append(f"<S {attrs}/>")
    return out


def _longest(periods: list[DashPeriod], default: float) -> float:
    longest = max((s.duration / r.timescale for p in periods for r in p.representations for s in r.segments), default=default)
    return math.ceil(longest * 1000) / 1000


def _attrs(values: dict[str, object]) -> str:
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in values.items())


def _duration(seconds: float) -> str:
    return f"PT{max(0.0, seconds):.3f}S"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _frame_rate(fps: float) -> str:
    for num, den in ((24000, 1001), (30000, 1001), (60000, 1001)):
        if abs(fps - num / den) < 0.005:
            return f"{num}/{den}"
    return f"{fps:g}"
