"""Typed requests and replies of the control API (what OpenAPI documents)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..runtime.media import STREAM_NAME

NAME_PATTERN = f"^{STREAM_NAME}$"


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="1-64 letters, digits, '-' or '_'", examples=["cam1"])
    ladder: list[str] | None = Field(
        default=None, min_length=1, description="renditions for this stream (default: the configured ladder)", examples=[["source", "360p"]]
    )
    playback: PlaybackMode = Field(default="public", description="signed: playback URLs need a token")


PlaybackMode = Literal["public", "signed"]


class PlaybackUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    playback: PlaybackMode = Field(description="signed: every playback URL needs a token (POST .../playback-token)")


class PlaybackTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_s: int = Field(default=3600, ge=1, le=7 * 86400, description="how long the token plays")
    ip: str | None = Field(default=None, max_length=64, description="the only viewer address it plays for")


class PlaybackToken(BaseModel):
    token: str = Field(description="an HS256 JWT: add ?token= to the playback URL (raylive carries it into every URL it serves)")
    expires_at: int
    playback_url: str = Field(description="the multivariant playlist with the token: a signed URL")


class PlaybackKeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_s: float = Field(default=3600, ge=0, le=7 * 86400, description="how long tokens signed with the keys before stay valid")


class PlaybackKey(BaseModel):
    kid: str = Field(description="put it in your JWT's header")
    secret: str = Field(description="base64url of the HS256 key, for tokens you sign yourself (shown once)")


class LadderUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ladder: list[str] | None = Field(min_length=1, description="renditions from the next publish on; null: the configured default")


class StreamCreated(BaseModel):
    name: str
    key: str = Field(description="The secret stream key. Shown once; only its hash is stored.")
    publish_url: str
    playback_url: str


class StreamInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    state: str = Field(description="idle, live or ended")
    created_at: float
    revoked: bool
    viewers: int = Field(description="sessions that fetched a playlist or segment in the last 30 s")
    peak_viewers: int
    unique_viewers: int
    started_at: float | None = None
    ended_at: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    resolution: str | None = None
    fps: float | None = None
    bitrate_kbps: float | None = None
    keyframe_interval_ms: int | None = None
    renditions: dict[str, dict[str, int]] = Field(default_factory=dict, description="bits/s out per rendition")
    viewers_by_rendition: dict[str, int] = Field(default_factory=dict)
    watch_time_s: float = 0.0
    node: str | None = Field(default=None, description="host name of the node whose stream actor runs this stream")
    node_id: str | None = Field(default=None, description="that node's Ray node id")
    actor: str | None = None
    ladder: list[str] | None = Field(default=None, description="this stream's own ladder; null: the configured default")
    playback: PlaybackMode = "public"
    encoder: str | None = Field(default=None, description="encoder of the ladder rungs (libx264, h264_nvenc)")
    transcode_lag_s: float | None = None
    transcode_realtime_factor: dict[str, float] = Field(default_factory=dict, description="media s encoded per wall s, per rung")
    transcoder_restarts: int | None = Field(default=None, description="transcoders lost (and replaced) during this publish")


class NodeInfo(BaseModel):
    node_id: str
    address: str
    alive: bool
    cpus: float
    gpus: float
    rtmp_port: int | None = Field(description="port its RTMP gateway listens on; null: no gateway is listening")
    rtmp_connections: int = 0
    playback_replicas: int = 0
    streams: list[str] = Field(default_factory=list, description="live streams whose actor runs on this node")


class ClusterInfo(BaseModel):
    nodes: list[NodeInfo]
    playback_replicas: int
    rtmp_url: str = Field(description="where broadcasters publish, as this API's host sees it (append /<stream-key>)")
    renditions: list[str] = Field(description="the renditions a stream's ladder may name")
    dashboard_url: str | None = Field(default=None, description="the Ray dashboard, when raylive started one")


class WebhookDelivery(BaseModel):
    id: str = Field(description="the event id (Raylive-Delivery)")
    event: str
    status: str = Field(description="delivered, retrying (will try again) or failed (given up after webhooks.max_age_s)")
    attempts: int
    error: str
    at: float


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    waiting: int = Field(description="events not yet delivered to it")
    deliveries: list[WebhookDelivery] = Field(description="its latest deliveries and failures, newest first")


class ErrorBody(BaseModel):
    error: str


class ViewerPoint(BaseModel):
    t: int = Field(description="start of the step, unix seconds")
    viewers: int


class IngestPoint(BaseModel):
    t: int
    bitrate_kbps: float
    fps: float
    late_frames: int
    transcode_lag_s: float
    keyframe_interval_ms: int


class StreamAnalytics(BaseModel):
    stream: str
    from_: float = Field(alias="from")
    to: float
    step: int
    peak_viewers: int = Field(description="most concurrent sessions in any 5 s heartbeat interval")
    unique_viewers: int
    watch_time_s: float = Field(description="sum over sessions of last minus first request")
    viewers: list[ViewerPoint]
    renditions: dict[str, float] = Field(description="share of viewer heartbeats per video rendition")
    ingest: list[IngestPoint]


class TopStream(BaseModel):
    stream: str
    watch_time_s: float
    sessions: int


class SqlQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str = Field(max_length=100_000, examples=["SELECT stream, count() FROM viewer_events GROUP BY stream"])
    parameters: dict[str, Any] = Field(default_factory=dict, description="ClickHouse {name:Type} parameters")


class SqlResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
