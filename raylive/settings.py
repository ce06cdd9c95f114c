"""raylive settings: defaults here, overridable from a YAML file (see configs/raylive.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class RtmpSettings:
    port: int = 1935
    app: str = "live"
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections: int = 1000
    max_streams: int = 0  # streams published through one node's gateway at once (0: no limit)
    max_bitrate_kbps: int = 0  # a publisher above this for 5 s is disconnected (0: no limit)
    max_message_size: int = 16 << 20
    publish_timeout_s: float = 10.0  # a connection that has not asked to publish by then is closed
    max_unpublished_per_address: int = 16  # connections from one address not yet publishing
    flush_interval_s: float = 0.25
    read_interval_s: float = 0.05  # a publisher's socket is read at most this often (CPU: fewer, larger reads)
    reconnect_grace_s: float = 10.0  # a dropped publisher may reconnect and continue the playlists
    # Ray workers kept started on each node for new streams' actors (≈ 60 MB each): 50 publishers
    # connecting at once get playlists in seconds instead of waiting for 50 process starts.
    warm_workers: int = 2


@dataclass
class HlsSettings:
    target_duration_s: float = 2.0
    # LL-HLS parts (and LL-DASH chunks): this much media each, rounded to whole frames; 0: none.
    part_duration_s: float = 0.2
    window_segments: int = 6
    # How long a segment stays fetchable after it is written; 0: what the HLS spec asks (its
    # duration plus the playlist's after it leaves the playlist: 2 x 12 s + 2 s + 4 s by default).
    segment_ttl_s: int = 0
    ended_ttl_s: int = 3600  # how long an ended stream's last window stays playable


def _default_renditions() -> dict[str, dict[str, int]]:
    return {
        "1080p": {"height": 1080, "video_kbps": 5000},
        "720p": {"height": 720, "video_kbps": 2800},
        "480p": {"height": 480, "video_kbps": 1400},
        "360p": {"height": 360, "video_kbps": 800},
        "240p": {"height": 240, "video_kbps": 400},
    }


@dataclass
class TranscodeSettings:
    # Renditions every stream gets unless its own `ladder` says otherwise: `source` is the
    # publisher's video passed through; the others are names from `renditions`. Rungs at or
    # above the source's height, or above its bitrate, are skipped (never upscale).
    ladder: list[str] = field(default_factory=lambda: ["source", "720p", "480p", "360p"])
    renditions: dict[str, dict[str, int]] = field(default_factory=_default_renditions)
    encoder: str = "auto"  # auto | x264 | nvenc: auto takes NVENC when a GPU is visible to the actor
    preset: str = "veryfast"  # x264 preset (NVENC uses p4)
    max_lag_s: float = 4.0  # behind real time by more than this: drop the most expensive rung
    gpus_per_stream: float = 0.25  # GPU share a transcoder asks for when it will use NVENC
    placement_timeout_s: float = 10.0  # no room for a transcoder this long: serve the source only


@dataclass
class AnalyticsSettings:
    # ClickHouse through clickhouse-connect: empty means the embedded chdb in <data-dir>/analytics;
    # `http://user:password@host:8123/db` uses a ClickHouse server with the same code.
    clickhouse_url: str = ""


@dataclass
class HttpSettings:
    port: int = 8000
    replicas: int = 1  # playback replicas, unless `autoscaling` is set
    # Serve autoscaling of the playback replicas, e.g. {min_replicas: 1, max_replicas: 8,
    # target_ongoing_requests: 64}; empty: a fixed `replicas`.
    autoscaling: dict[str, Any] = field(default_factory=dict)
    max_replicas_per_node: int = 0  # e.g. 1 spreads playback replicas over the nodes (0: no limit)
    proxy_location: str = "EveryNode"  # Serve's HTTP ingress: EveryNode | HeadOnly | Disabled
    max_ongoing_requests: int = 1000
    segment_cache_mb: int = 256


@dataclass
class HookSettings:
    """Admission hooks (raylive/hooks.py): URLs of the platform's service asked before a publish
    (after the key check) and before a viewer's session starts; empty: not asked."""

    publish_url: str = ""
    play_url: str = ""
    timeout_s: float = 2.0
    fail_open: bool = False  # a hook that does not answer in time admits (true) or refuses (false)
    cache_s: float = 5.0  # answers kept per (stream, client, params)
    # Signed playback (raylive/playback_auth.py): where your RS256/ES256 public keys are, for
    # tokens you sign yourself; HS256 tokens use raylive's playback keys.
    jwks_url: str = ""
    # The viewer's address for the play hook and IP-bound tokens: the connection's peer (with the
    # HAProxy ingress, the ingress itself), or the last entry of this header when a proxy or CDN you
    # run in front sets it (e.g. x-forwarded-for; a header no proxy sets is the viewer's to forge).
    client_address_header: str = ""


@dataclass
class WebhookSettings:
    """Event webhooks (raylive/webhooks.py), signed with `RAYLIVE_WEBHOOK_SECRET` or else the secret
    kept in <data_dir>/webhook_secret."""

    endpoints: list[str] = field(default_factory=list)  # URLs; each gets every event, in order
    events: list[str] = field(default_factory=list)  # the events sent (empty: all)
    timeout_s: float = 5.0  # per attempt
    max_age_s: float = 86400.0  # an event undelivered this long is given up (listed as failed)


@dataclass
class RecordingSettings:
    """Recordings of publish sessions (VOD); a stream's own policy (PUT .../recording) overrides these."""

    enabled: bool = False  # record streams that have no policy of their own
    url: str = ""  # any fsspec URL (s3://bucket/prefix, ...); empty: <data_dir>/recordings (one node only)
    max_age_s: float = 0  # recordings that ended longer ago are removed (0: kept)
    max_bytes: int = 0  # a stream's recordings beyond this are removed, oldest first (0: no limit)
    dvr_window_s: float = 7200  # /live/NAME/dvr.m3u8 reaches this far back into a recorded stream (0: no DVR)


@dataclass
class Settings:
    host: str = "0.0.0.0"
    data_dir: str = "~/.raylive"
    # Stream keys, live state, viewers, the analytics buffer: durable (see launcher/redis_server.py).
    redis_url: str = ""  # empty: raylive starts its own Redis in the data dir
    # Segments and playlists: bounded and never persisted. Empty: raylive starts its own in the
    # data dir when it starts the state Redis too, else the media shares `redis_url`.
    media_redis_url: str = ""
    media_redis_max_mb: int = 1024  # the embedded media Redis' memory (oldest segments go first)
    ray_address: str = ""  # empty: start a local Ray cluster
    dashboard: bool = True
    rtmp: RtmpSettings = field(default_factory=RtmpSettings)
    hls: HlsSettings = field(default_factory=HlsSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    hooks: HookSettings = field(default_factory=HookSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def recording_url(self) -> str:
        return self.recording.url or str(self.data_path / "recordings")

    @property
    def clickhouse_dsn(self) -> str:
        return self.analytics.clickhouse_url or f"chdb://{self.data_path / 'analytics'}"


def _merge(obj: Any, values: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown setting {where}{key}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"setting {where}{key} must be a mapping")
            _merge(current, value, f"{where}{key}.")
        elif isinstance(current, (list, dict)) and not isinstance(value, type(current)):
            raise ValueError(f"setting {where}{key} must be a {type(current).__name__}")
        else:
            setattr(obj, key, type(current)(value) if current is not None else value)


def load_settings(path: str | Path | None = None) -> Settings:
    settings = Settings()
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: settings must be a mapping")
        _merge(settings, data, "")
    validate_ladder(settings.transcode.ladder, settings.transcode)
    return settings


def validate_ladder(ladder: list[str], transcode: TranscodeSettings) -> list[str]:
    """A ladder names `source` and/or renditions from the catalogue; raise ValueError otherwise."""
    if not ladder:
        raise ValueError("a ladder needs at least one rendition")
    for name in ladder:
        if name != "source" and name not in transcode.renditions:
            raise ValueError(f"unknown rendition {name!r} (known: source, {', '.join(transcode.renditions)})")
    for name, spec in transcode.renditions.items():
        if name in ("source", "audio", "video") or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"bad rendition name {name!r}")
        if set(spec) != {"height", "video_kbps"} or min(spec.values()) <= 0:
            raise ValueError(f"rendition {name!r} needs a positive height and video_kbps")
    if transcode.encoder not in ("auto", "x264", "nvenc"):
        raise ValueError(f"transcode.encoder must be auto, x264 or nvenc, not {transcode.encoder!r}")
    return ladder


def settings_dict(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)
