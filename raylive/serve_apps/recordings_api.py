"""Recordings in the control API: a stream's recording policy, its recordings listed and deleted,
clips made from them."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from .. import store
from ..actors.clips import CLIPS, MAX_CLIP_S, build_clip, list_clips, offset_of
from ..runtime.media import STREAM_NAME
from ..runtime.recording import RECORDING, RECORDING_ID
from .auth import Admin, Reader
from .context import STATE, call, stream
from .models import ERRORS, ErrorBody, StreamInfo

router = APIRouter()
STREAM_NAME_RE, RECORDING_ID_RE = re.compile(f"^{STREAM_NAME}$"), re.compile(f"^{RECORDING_ID}$")
CLIP_ID_RE = re.compile("^[0-9a-f]{8}$")


class RecordingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(description="record this stream's publishes (each one a recording)")
    max_age_s: float = Field(default=0, ge=0, description="recordings that ended longer ago are removed (0: kept)")
    max_bytes: int = Field(default=0, ge=0, description="the stream's recordings beyond this are removed, oldest first (0: no limit)")


class RecordingPolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recording: RecordingPolicy | None = Field(description="null: the configured default (`recording` in raylive.yaml)")


class RecordingInfo(BaseModel):
    id: str
    stream: str
    state: str = Field(description="recording, complete or failed (the reason in `error`; what was stored stays playable)")
    error: str
    started_at: float
    ended_at: float | None
    duration_s: float
    bytes: int
    renditions: list[str]
    discontinuities: int = Field(description="publisher reconnects within the recording")
    playback_url: str = Field(description="its multivariant playlist (EVENT while recording, VOD once ended)")


def _store(name: str, rec: str = "") -> Any:
    """The recording storage, for a path that names a stream and a recording and nothing else."""
    if not STREAM_NAME_RE.match(name) or (rec and not RECORDING_ID_RE.match(rec)):
        raise HTTPException(404, f"no recording {rec!r} of {name!r}" if rec else f"no stream named {name!r}")
    if STATE.recordings is None:
        raise HTTPException(503, "recordings are not configured on this deployment")
    return STATE.recordings


def _info(request: Request, summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary, "playback_url": f"{request.base_url}live/{summary['stream']}/recordings/{summary['id']}/index.m3u8"}


@router.put("/api/v1/streams/{name}/recording", response_model=StreamInfo, responses=ERRORS)
async def set_recording(name: str, body: RecordingPolicyUpdate, _: Admin) -> dict[str, Any]:
    """Record this stream or not, and how long its recordings stay (from its next publish on)."""
    try:
        await call(store.set_recording, name, body.recording.model_dump() if body.recording else None)
    except store.NoSuchStream:
        raise HTTPException(404, f"no stream named {name!r}") from None
    return await stream(name)


@router.get("/api/v1/streams/{name}/recordings", response_model=list[RecordingInfo], responses=ERRORS)
async def list_recordings(name: str, request: Request, _: Reader) -> list[dict[str, Any]]:
    """The stream's recordings, oldest first."""
    recs = await asyncio.to_thread(_store(name).recordings, name)
    return [_info(request, r.summary()) for r in recs]


@router.get("/api/v1/streams/{name}/recordings/{rec}", response_model=RecordingInfo, responses=ERRORS)
async def get_recording(name: str, rec: str, request: Request, _: Reader) -> dict[str, Any]:
    found = await asyncio.to_thread(_store(name, rec).recording, name, rec, False)
    if found is None:
        raise HTTPException(404, f"no recording {rec!r} of {name!r}")
    return _info(request, found.summary())


@router.delete("/api/v1/streams/{name}/recordings/{rec}", status_code=204, responses={**ERRORS, 409: {"model": ErrorBody}})
async def delete_recording(name: str, rec: str, _: Admin) -> None:
    found = await asyncio.to_thread(_store(name, rec).recording, name, rec, False)
    if found is None:
        raise HTTPException(404, f"no recording {rec!r} of {name!r}")
    if found.state == RECORDING and store.text(await STATE.redis.hget(store.live_key(name), "recording") or b"") == rec:
        raise HTTPException(409, f"recording {rec!r} is being written; stop the stream first")
    await asyncio.to_thread(_store(name, rec).delete, name, rec)


class ClipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    recording: str | None = Field(default=None, pattern=f"^{RECORDING_ID}$", description="from/to are seconds into it; null: unix times")
    from_: float = Field(alias="from", ge=0, description="start: seconds into the recording, or a unix time")
    to: float = Field(gt=0, description="end, the same way")


class ClipInfo(BaseModel):
    id: str
    stream: str
    recording: str
    from_s: float = Field(description="asked start, seconds into the recording (the clip starts on the keyframe nearest it)")
    to_s: float
    starts_at: float = Field(description="the asked start as a unix time")
    duration_s: float
    bytes: int
    created_at: float
    url: str = Field(description="the MP4 (moov first: plays while it downloads)")


def _clip_info(request: Request, clip: dict[str, Any]) -> dict[str, Any]:
    return {**clip, "url": f"{request.base_url}live/{clip['stream']}/clips/{clip['id']}.mp4"}


@router.post("/api/v1/streams/{name}/clips", status_code=201, response_model=ClipInfo, responses={**ERRORS, 422: {"model": ErrorBody}})
async def make_clip(name: str, body: ClipRequest, request: Request, _: Admin) -> dict[str, Any]:
    """One MP4 of a span of a recording, cut on keyframes, without re-encoding (at most 10 minutes)."""
    recs = await asyncio.to_thread(_store(name).recordings, name)
    try:
        if body.recording is not None:
            rec = next((r for r in recs if r.id == body.recording), None)
            if rec is None:
                raise HTTPException(404, f"no recording {body.recording!r} of {name!r}")
            start, end = body.from_, body.to
        else:
            found = next((r for r in recs if r.started_at <= body.from_ <= (r.ended_at or time.time())), None)
            rec = await asyncio.to_thread(STATE.recordings.recording, name, found.id) if found else None  # with its segments
            if rec is None:
                raise HTTPException(404, f"no recording of {name!r} holds that start time")
            start, end = offset_of(rec, body.from_), min(rec.duration_s(), offset_of(rec, body.from_) + body.to - body.from_)
        if not 0 < end - start <= MAX_CLIP_S:
            raise ValueError(f"a clip lasts more than 0 and at most {MAX_CLIP_S:.0f} s")
        clip = await build_clip.remote(STATE.recordings.url, name, rec.id, start, end)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if "error" in clip:
        raise HTTPException(422, f"no clip: {clip['error']}")
    return _clip_info(request, clip)


@router.get("/api/v1/streams/{name}/clips", response_model=list[ClipInfo], responses=ERRORS)
async def clips(name: str, request: Request, _: Reader) -> list[dict[str, Any]]:
    return [_clip_info(request, c) for c in await asyncio.to_thread(list_clips, _store(name), name)]


@router.delete("/api/v1/streams/{name}/clips/{clip}", status_code=204, responses=ERRORS)
async def delete_clip(name: str, clip: str, _: Admin) -> None:
    store = _store(name)
    if not CLIP_ID_RE.match(clip) or store.get(name, CLIPS, f"{clip}.json") is None:
        raise HTTPException(404, f"no clip {clip!r} of {name!r}")
    for suffix in (".json", ".mp4"):
        await asyncio.to_thread(store.fs.rm, store.path(name, CLIPS, clip + suffix))
