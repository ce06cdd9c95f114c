"""Application builders for `serve deploy configs/serve.yaml` (Ray clusters, KubeRay): the same
apps `raylive up` runs, configured from the Serve config's `args` instead of from `raylive up`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ray.serve import Application

from ..settings import HookSettings, Settings
from .control import ControlDeployment
from .playback import PlaybackDeployment


def playback_app(args: dict[str, Any]) -> Application:
    """args: redis_url, segment_cache_mb (256), hooks (as in raylive's settings: play_url, jwks_url, ...),
    recording_url (the recordings' fsspec URL, as the stream actors write them; empty: no VOD), dvr_window_s (7200)."""
    return PlaybackDeployment.bind(
        args["redis_url"],
        int(args.get("segment_cache_mb", 256)),
        HookSettings(**args.get("hooks", {})),
        str(args.get("recording_url", "")),
        float(args.get("dvr_window_s", 7200)),
    )


def control_app(args: dict[str, Any]) -> Application:
    """args: redis_url, rtmp_port (1935), admin_token_env (the variable holding the admin token,
    RAYLIVE_ADMIN_TOKEN), renditions (default: raylive's catalogue), recording_url (as for playback)."""
    token = os.environ.get(str(args.get("admin_token_env", "RAYLIVE_ADMIN_TOKEN")), "")
    if not token:
        raise ValueError("set the admin token in the environment variable named by admin_token_env (RAYLIVE_ADMIN_TOKEN)")
    renditions = list(args.get("renditions") or Settings().transcode.renditions)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    return ControlDeployment.bind(
        args["redis_url"], token_hash, int(args.get("rtmp_port", 1935)), renditions, None, str(args.get("recording_url", ""))
    )
