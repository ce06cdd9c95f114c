"""Redis layout: stream keys (hashed), live stream state, and live HLS files.

Every Redis key raylive uses is built here, so the CLI, the actors and the Serve apps agree.
Stream keys are secrets: only their SHA-256 is stored, lookups go through the hash, and the
final comparison is constant-time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import time
import typing
from dataclasses import dataclass
from typing import Any

import redis

from .runtime.media import STREAM_NAME

PREFIX = "rl:"
NAME_RE = re.compile(f"^{STREAM_NAME}$")
STREAMS = PREFIX + "streams"


def text(value: bytes | str) -> str:
    """A Redis reply as str (redis-py types replies as bytes | str; raylive's clients return bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def stream_key(name: str) -> str:
    return f"{PREFIX}stream:{name}"


def keyhash_key(digest: str) -> str:
    return f"{PREFIX}keyhash:{digest}"


def live_key(name: str) -> str:
    """Hash: the stream's `LiveStatus` (written by its actor alone, through `live_fields`)."""
    return f"{PREFIX}live:{name}"


def snapshot_key(name: str) -> str:
    """The stream actor's playlist state, so that a restarted actor continues them."""
    return f"{PREFIX}live:{name}:snapshot"


def file_key(name: str, path: str) -> str:
    return f"{PREFIX}file:{name}:{path}"


def playlists_channel(name: str) -> str:
    """Pub/sub in the media Redis: each media playlist the stream writes, as `<path>\\n<text>`."""
    return f"{PREFIX}playlists:{name}"


# Where segments and playlists are (a Redis URL), said by `raylive up`: every part that has the
# state Redis finds the media from it. Absent: the media shares the state Redis.
MEDIA_URL = PREFIX + "media_url"


def media_url(r: redis.Redis, state_url: str) -> str:
    url = r.get(MEDIA_URL)
    return text(url) if url else state_url


# Signs viewer session ids (viewers.new_sid): made once by the first playback replica.
SID_SECRET = PREFIX + "sid_secret"

# Hash: "<kind>:<id>" -> JSON {kind, node_id, ts, ...} of every running gateway and playback
# replica, refreshed every few seconds by each; /api/v1/cluster reads it.
PRESENCE = PREFIX + "presence"
PRESENCE_FRESH_S = 12.0


def presence_field(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def presence_value(kind: str, node_id: str, **fields: Any) -> str:
    return json.dumps({"kind": kind, "node_id": node_id, "ts": time.time(), **fields})


def read_presence(r: redis.Redis, now: float | None = None) -> list[dict[str, Any]]:
    """Fresh entries; stale ones (a process that died without saying goodbye) are removed."""
    now = time.time() if now is None else now
    fresh: list[dict[str, Any]] = []
    stale: list[bytes | str] = []
    for field, raw in r.hgetall(PRESENCE).items():
        entry = json.loads(raw)
        if now - entry["ts"] < PRESENCE_FRESH_S:
            fresh.append(entry)
        else:
            stale.append(field)
    if stale:
        r.hdel(PRESENCE, *stale)
    return fresh


EVENTS_CHANNEL = PREFIX + "events"  # pub/sub: {"event": "publish"|"unpublish", "name": ...}
# Redis Stream of analytics events (`analytics.emit`), read by the AnalyticsWriter's consumer group;
# events that cannot be rows go to the dead letters with the reason (`actors/analytics.py`).
ANALYTICS_EVENTS = PREFIX + "analytics"
ANALYTICS_DEAD_LETTERS = PREFIX + "analytics:dead"
# Hash: processor name -> its sealed, pickled spec (`actors/processor.py`), for a restarted registry.
PROCESSOR_SPECS = PREFIX + "processors"
# Event webhooks (raylive/webhooks.py): what happened, in order, kept in the durable Redis until
# every endpoint has it (each endpoint is a consumer group of its own); at most this many kept.
WEBHOOK_EVENTS = PREFIX + "webhooks"
WEBHOOK_EVENTS_MAX = 100_000
WEBHOOK_ENDPOINTS = PREFIX + "webhooks:endpoints"  # hash: endpoint id -> URL, of the endpoints configured now


def webhook_group(endpoint_id: str) -> str:
    """The consumer group of `WEBHOOK_EVENTS` that one endpoint's deliveries read."""
    return f"webhook:{endpoint_id}"


def webhook_deliveries_key(endpoint_id: str) -> str:
    """A list of an endpoint's latest deliveries and failures (JSON, newest first)."""
    return f"{PREFIX}webhooks:deliveries:{endpoint_id}"


def webhook_status(r: redis.Redis, recent: int = 20) -> list[dict[str, Any]]:
    """Each webhook endpoint: its URL, how many events wait for it, its latest deliveries."""
    endpoints = {text(k): text(v) for k, v in r.hgetall(WEBHOOK_ENDPOINTS).items()}
    groups = {}
    if endpoints:
        with contextlib.suppress(redis.ResponseError):  # no event queued yet
            groups = {text(g["name"]): g for g in r.xinfo_groups(WEBHOOK_EVENTS)}
    out = []
    for eid, url in sorted(endpoints.items(), key=lambda kv: kv[1]):
        group = groups.get(webhook_group(eid), {})
        waiting = int(group.get("pending") or 0) + int(group.get("lag") or 0)
        rows = [json.loads(row) for row in r.lrange(webhook_deliveries_key(eid), 0, recent - 1)]
        out.append({"id": eid, "url": url, "waiting": waiting, "deliveries": rows})
    return out


def emit_webhook(r: redis.Redis, event: str, **data: Any) -> None:
    """Queue one event for every webhook endpoint (with none configured, nothing is kept)."""
    if not r.exists(WEBHOOK_ENDPOINTS):
        return
    r.xadd(WEBHOOK_EVENTS, {"event": event, "data": json.dumps(data, separators=(",", ":")), "at": f"{time.time():.3f}"},
           maxlen=WEBHOOK_EVENTS_MAX, approximate=True)  # fmt: skip


VIEWER_WINDOW_S = 30  # a viewer is concurrent if its session made a request this recently
VIEWER_HISTORY_S = 86400


@dataclass
class LiveStatus:
    """What `rl:live:NAME` says of a stream's current (or last) publish. Its stream actor is the one
    writer (`actors/stream_output.py`), field by field through `live_fields`; playback raises
    `peak_viewers` alone. Read back with each field's own type (`read_live`)."""

    state: str = "idle"  # live | reconnecting | ended
    started_at: float | None = None
    dropped_at: float | None = None  # the publisher's connection dropped (state reconnecting)
    ended_at: float | None = None
    end_reason: str | None = None
    node: str | None = None  # host name of the node running the stream actor
    node_id: str | None = None
    actor: str | None = None
    pid: int | None = None
    epoch: str | None = None  # the current period's name (in its segment names)
    bitrate_kbps: float | None = None
    fps: float | None = None
    keyframe_interval_ms: int | None = None
    video_codec: str | None = None
    resolution: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    renditions: dict[str, dict[str, int]] | None = None  # name -> bandwidth, average_bandwidth
    encoder: str | None = None
    transcode_lag_s: float | None = None
    transcode_realtime_factor: dict[str, float] | None = None
    transcoder_pid: int | None = None
    transcoder_restarts: int | None = None
    recording: str | None = None  # id of the recording this publish writes (none: not recorded)
    peak_viewers: int = 0


def _parser(hint: Any) -> Any:
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    kind = typing.get_origin(kinds[0]) or kinds[0]
    return json.loads if kind is dict else kind


_LIVE_PARSERS: dict[str, Any] = {name: _parser(hint) for name, hint in typing.get_type_hints(LiveStatus).items()}


def live_fields(**values: Any) -> dict[Any, str]:
    """A `LiveStatus` update as the hash's text fields (a name it does not have is a KeyError)."""
    return {k: json.dumps(v) if _LIVE_PARSERS[k] is json.loads else str(v) for k, v in values.items()}


def read_live(raw: dict[Any, Any]) -> LiveStatus:
    """`rl:live:NAME` as read by HGETALL; fields it does not know (an older writer's) are left out."""
    values = {text(k): text(v) for k, v in raw.items()}
    return LiveStatus(**{k: _LIVE_PARSERS[k](v) for k, v in values.items() if k in _LIVE_PARSERS})


def viewers_last_key(name: str, rendition: str | None = None) -> str:
    """Sorted set: session id -> unix time of its latest request (per stream, or per rendition)."""
    return f"{PREFIX}viewers:{name}" + (f":{rendition}" if rendition else "")


def viewers_first_key(name: str) -> str:
    """Sorted set: session id -> unix time of its first request (for watch time)."""
    return f"{PREFIX}viewers-first:{name}"


def unique_viewers_key(name: str) -> str:
    return f"{PREFIX}uniq:{name}"


def secret_digest(secret: str) -> str:
    """What is kept of a secret (stream key, API token): its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


hash_stream_key = secret_digest


class StreamExists(Exception):
    pass


class NoSuchStream(Exception):
    pass


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError("stream names are 1-64 characters: letters, digits, '-' and '_', starting with a letter or digit")
    return name


PLAYBACK_MODES = ("public", "signed")  # signed: every playback URL carries a token (raylive/playback_auth.py)
PLAYBACK_KEYS = PREFIX + "playback_keys"  # hash: kid -> {"secret": hex, "retire_at": unix s, 0 while current}


PLAYBACK_FIELD = "playback"  # of a stream's hash


def create_stream(r: redis.Redis, name: str, ladder: list[str] | None = None, playback: str = "public") -> str:
    """Create stream NAME and return its new secret key (shown once, stored hashed).
    `ladder` overrides the configured default renditions for this stream."""
    validate_name(name)
    if playback not in PLAYBACK_MODES:
        raise ValueError(f"playback is one of {', '.join(PLAYBACK_MODES)}")
    key = secrets.token_urlsafe(24)
    digest = hash_stream_key(key)
    if not r.hsetnx(stream_key(name), "name", name):
        raise StreamExists(name)
    with r.pipeline() as p:
        p.hset(stream_key(name), mapping={"key_hash": digest, "created_at": time.time(), "revoked": 0})
        if ladder is not None:
            p.hset(stream_key(name), "ladder", json.dumps(ladder))
        if playback != "public":
            p.hset(stream_key(name), PLAYBACK_FIELD, playback)
        p.set(keyhash_key(digest), name)
        p.sadd(STREAMS, name)
        p.execute()
    return key


def revoke_stream(r: redis.Redis, name: str) -> None:
    digest = r.hget(stream_key(name), "key_hash")
    if digest is None:
        raise NoSuchStream(name)
    with r.pipeline() as p:
        p.delete(keyhash_key(text(digest)))
        p.hset(stream_key(name), mapping={"revoked": 1, "key_hash": ""})
        p.execute()
    emit_webhook(r, "key.revoked", stream=name)


def rotate_key(r: redis.Redis, name: str) -> str:
    """Replace NAME's key with a new one (the old one stops working) and return it."""
    digest = r.hget(stream_key(name), "key_hash")
    if digest is None:
        raise NoSuchStream(name)
    key = secrets.token_urlsafe(24)
    new = hash_stream_key(key)
    with r.pipeline() as p:
        if digest:
            p.delete(keyhash_key(text(digest)))
        p.set(keyhash_key(new), name)
        p.hset(stream_key(name), mapping={"key_hash": new, "revoked": 0})
        p.execute()
    return key


def stream_ladder(r: redis.Redis, name: str) -> list[str] | None:
    """This stream's own renditions (None: the configured default)."""
    raw = r.hget(stream_key(name), "ladder")
    return json.loads(raw) if raw else None


def set_ladder(r: redis.Redis, name: str, ladder: list[str] | None) -> None:
    """This stream's renditions from its next publish on (None: the configured default)."""
    if not r.exists(stream_key(name)):
        raise NoSuchStream(name)
    if ladder is None:
        r.hdel(stream_key(name), "ladder")
    else:
        r.hset(stream_key(name), "ladder", json.dumps(ladder))


def set_playback(r: redis.Redis, name: str, mode: str) -> None:
    if mode not in PLAYBACK_MODES:
        raise ValueError(f"playback is one of {', '.join(PLAYBACK_MODES)}")
    if not r.exists(stream_key(name)):
        raise NoSuchStream(name)
    r.hset(stream_key(name), PLAYBACK_FIELD, mode)


RECORDING_FIELD = "recording"  # of a stream's hash: its own recording policy (JSON)


def set_recording(r: redis.Redis, name: str, policy: dict[str, Any] | None) -> None:
    """This stream's recording policy from its next publish on ({enabled, max_age_s, max_bytes});
    None: the configured default."""
    if not r.exists(stream_key(name)):
        raise NoSuchStream(name)
    if policy is None:
        r.hdel(stream_key(name), RECORDING_FIELD)
    else:
        r.hset(stream_key(name), RECORDING_FIELD, json.dumps(policy))


def stream_recording(r: redis.Redis, name: str) -> dict[str, Any] | None:
    raw = r.hget(stream_key(name), RECORDING_FIELD)
    return json.loads(raw) if raw else None


def stream_playback(r: redis.Redis, name: str) -> str | None:
    """public or signed; None: no such stream."""
    raw = r.hget(stream_key(name), PLAYBACK_FIELD)
    if raw is None:
        return "public" if r.exists(stream_key(name)) else None
    return text(raw)


def playback_keys(r: redis.Redis, now: float | None = None) -> dict[str, bytes]:
    """The keys playback tokens may be signed with: the current one, and those retired less than
    their overlap ago (so that no viewer is cut off by a rotation)."""
    now = time.time() if now is None else now
    out = {}
    for kid, raw in r.hgetall(PLAYBACK_KEYS).items():
        entry = json.loads(raw)
        if not entry["retire_at"] or entry["retire_at"] > now:
            out[text(kid)] = bytes.fromhex(entry["secret"])
    return out


def current_playback_key(r: redis.Redis) -> tuple[str, bytes]:
    for kid, raw in r.hgetall(PLAYBACK_KEYS).items():
        entry = json.loads(raw)
        if not entry["retire_at"]:
            return text(kid), bytes.fromhex(entry["secret"])
    return rotate_playback_key(r, 0.0)


def rotate_playback_key(r: redis.Redis, overlap_s: float) -> tuple[str, bytes]:
    """A new current key; the others stay valid `overlap_s` more (keys retired earlier go)."""
    now = time.time()
    kid, secret = secrets.token_hex(4), secrets.token_bytes(32)
    with r.pipeline() as p:
        for old, raw in r.hgetall(PLAYBACK_KEYS).items():
            entry = json.loads(raw)
            if not entry["retire_at"]:
                p.hset(PLAYBACK_KEYS, old, json.dumps({**entry, "retire_at": now + overlap_s}))
            elif entry["retire_at"] <= now:
                p.hdel(PLAYBACK_KEYS, old)
        p.hset(PLAYBACK_KEYS, kid, json.dumps({"secret": secret.hex(), "retire_at": 0}))
        p.execute()
    return kid, secret


def delete_stream(r: redis.Redis, name: str) -> None:
    """Forget the stream in the state Redis (its files: `delete_stream_files`)."""
    revoke_stream(r, name)
    per_rendition = list(r.scan_iter(match=viewers_last_key(name, "*"), count=1000))
    with r.pipeline() as p:
        p.delete(stream_key(name), live_key(name), viewers_last_key(name), viewers_first_key(name), unique_viewers_key(name))
        if per_rendition:
            p.delete(*per_rendition)
        p.srem(STREAMS, name)
        p.execute()


def delete_stream_files(media: redis.Redis, name: str) -> None:
    """Every file of the stream (names have no ':', so the pattern is the stream's alone)."""
    keys = [snapshot_key(name), *media.scan_iter(match=file_key(name, "*"), count=1000)]
    for i in range(0, len(keys), 1000):
        media.delete(*keys[i : i + 1000])


def get_stream(r: redis.Redis, name: str, now: float | None = None) -> dict[str, Any] | None:
    """Everything known about a stream (never its key): registration, live state, viewers."""
    now = time.time() if now is None else now
    with r.pipeline(transaction=False) as p:
        p.hgetall(stream_key(name))
        p.hgetall(live_key(name))
        p.zcount(viewers_last_key(name), now - VIEWER_WINDOW_S, "+inf")
        p.pfcount(unique_viewers_key(name))
        info_raw, live_raw, viewers, unique = p.execute()
    if not info_raw:
        return None
    info = {k.decode(): v.decode() for k, v in info_raw.items()}
    live = read_live(live_raw)
    out: dict[str, Any] = {
        "name": name,
        "created_at": float(info.get("created_at", 0)),
        "revoked": info.get("revoked") == "1",
        "ladder": json.loads(info["ladder"]) if info.get("ladder") else None,
        "playback": info.get(PLAYBACK_FIELD, "public"),
        "recording": json.loads(info[RECORDING_FIELD]) if info.get(RECORDING_FIELD) else None,
        "viewers": int(viewers),
        "unique_viewers": int(unique),
    }
    out.update((k, v) for k, v in dataclasses.asdict(live).items() if v is not None)
    return out


def viewer_details(r: redis.Redis, name: str, renditions: list[str], now: float | None = None) -> dict[str, Any]:
    """Concurrent viewers per rendition and total watch time (sum of session spans)."""
    now = time.time() if now is None else now
    with r.pipeline(transaction=False) as p:
        for rendition in renditions:
            p.zcount(viewers_last_key(name, rendition), now - VIEWER_WINDOW_S, "+inf")
        p.zrange(viewers_first_key(name), 0, -1, withscores=True)
        p.zrange(viewers_last_key(name), 0, -1, withscores=True)
        *counts, first, last = p.execute()
    first_seen = dict(first)
    watch = sum(max(0.0, seen - first_seen.get(sid, seen)) for sid, seen in last)
    return {"viewers_by_rendition": dict(zip(renditions, map(int, counts), strict=True)), "watch_time_s": round(watch, 1)}


def list_streams(r: redis.Redis) -> list[dict[str, Any]]:
    now = time.time()
    return [s for raw in sorted(r.smembers(STREAMS)) if (s := get_stream(r, text(raw), now)) is not None]


def check_stream_key(name: str | None, stored_digest: bytes | None, key: str) -> bool:
    """Constant-time comparison of a presented key against the stored hash."""
    if name is None or not stored_digest:
        return False
    return hmac.compare_digest(stored_digest, hash_stream_key(key).encode())


# -- API tokens ---------------------------------------------------------------------------
# Hash: SHA-256 of a token -> JSON {name, scopes, created_at}; TOKEN_NAMES: name -> that digest.
# (The admin token is not here: it is the deployment's, from its environment or data dir.)
TOKENS = PREFIX + "tokens"
TOKEN_NAMES = PREFIX + "token_names"


class TokenExists(Exception):
    pass


def create_token(r: redis.Redis, name: str, scopes: list[str]) -> str:
    token = "rlt_" + secrets.token_urlsafe(32)
    digest = secret_digest(token)
    record = json.dumps({"name": name, "scopes": sorted(set(scopes)), "created_at": time.time()})
    if not r.hsetnx(TOKEN_NAMES, name, digest):
        raise TokenExists(name)
    r.hset(TOKENS, digest, record)
    return token


def list_tokens(r: redis.Redis) -> list[dict[str, Any]]:
    return sorted((json.loads(v) for v in r.hvals(TOKENS)), key=lambda t: str(t["name"]))


def delete_token(r: redis.Redis, name: str) -> bool:
    digest = r.hget(TOKEN_NAMES, name)
    if digest is None:
        return False
    with r.pipeline() as p:
        p.hdel(TOKENS, text(digest))
        p.hdel(TOKEN_NAMES, name)
        p.execute()
    return True


def ws_ticket_key(digest: str) -> str:
    """A one-time WebSocket ticket (its SHA-256): the scopes it carries, for a few seconds."""
    return f"{PREFIX}ws_ticket:{digest}"
