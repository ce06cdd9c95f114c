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
    max_message_size: int = 16 << 20
    flush_interval_s: float = 0.25
    reconnect_grace_s: float = 10.0  # a dropped publisher may reconnect and continue the playlists


@dataclass
class HlsSettings:
    target_duration_s: float = 2.0
    window_segments: int = 6
    segment_ttl_s: int = 120  # how long a segment stays fetchable after it is written
    ended_ttl_s: int = 3600  # how long an ended stream's last window stays playable


@dataclass
class HttpSettings:
    port: int = 8000
    replicas: int = 1
    max_ongoing_requests: int = 1000
    segment_cache_mb: int = 256


@dataclass
class Settings:
    host: str = "0.0.0.0"
    data_dir: str = "~/.raylive"
    redis_url: str = ""  # empty: raylive starts its own Redis in the data dir
    ray_address: str = ""  # empty: start a local Ray cluster
    dashboard: bool = True
    rtmp: RtmpSettings = field(default_factory=RtmpSettings)
    hls: HlsSettings = field(default_factory=HlsSettings)
    http: HttpSettings = field(default_factory=HttpSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


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
        else:
            setattr(obj, key, type(current)(value) if current is not None else value)


def load_settings(path: str | Path | None = None) -> Settings:
    settings = Settings()
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: settings must be a mapping")
        _merge(settings, data, "")
    return settings


def settings_dict(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)
