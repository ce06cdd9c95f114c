"""Redis layout: stream keys (hashed), live stream state, and live HLS files.

Every Redis key raylive uses is built here, so the CLI, the actors and the Serve apps agree.
Stream keys are secrets: only their SHA-256 is stored, lookups go through the hash, and the
final comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import redis

PREFIX = "rl:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STREAMS = PREFIX + "streams"


def stream_key(name: str) -> str:
    return f"{PREFIX}stream:{name}"


def keyhash_key(digest: str) -> str:
    return f"{PREFIX}keyhash:{digest}"


def live_key(name: str) -> str:
    return f"{PREFIX}live:{name}"


def file_key(name: str, path: str) -> str:
    return f"{PREFIX}file:{name}:{path}"


def hash_stream_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class StreamExists(Exception):
    pass


class NoSuchStream(Exception):
    pass


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError("stream names are 1-64 characters: letters, digits, '-' and '_', starting with a letter or digit")
    return name


def create_stream(r: redis.Redis, name: str) -> str:
    """Create stream NAME and return its new secret key (shown once, stored hashed)."""
    validate_name(name)
    key = secrets.token_urlsafe(24)
    digest = hash_stream_key(key)
    if not r.hsetnx(stream_key(name), "name", name):
        raise StreamExists(name)
    with r.pipeline() as p:
        p.hset(stream_key(name), mapping={"key_hash": digest, "created_at": time.time(), "revoked": 0})
        p.set(keyhash_key(digest), name)
        p.sadd(STREAMS, name)
        p.execute()
    return key


def revoke_stream(r: redis.Redis, name: str) -> None:
    digest = r.hget(stream_key(name), "key_hash")
    if digest is None:
        raise NoSuchStream(name)
    with r.pipeline() as p:
        p.delete(keyhash_key(digest.decode()))
        p.hset(stream_key(name), mapping={"revoked": 1, "key_hash": ""})
        p.execute()


def list_streams(r: redis.Redis) -> list[dict[str, Any]]:
    out = []
    for raw in sorted(r.smembers(STREAMS)):
        name = raw.decode()
        info = {k.decode(): v.decode() for k, v in r.hgetall(stream_key(name)).items()}
        live = {k.decode(): v.decode() for k, v in r.hgetall(live_key(name)).items()}
        out.append(
            {
                "name": name,
                "created_at": float(info.get("created_at", 0)),
                "revoked": info.get("revoked") == "1",
                "state": live.get("state", "idle"),
                **{k: v for k, v in live.items() if k != "state"},
            }
        )
    return out


def check_stream_key(name: str | None, stored_digest: bytes | None, key: str) -> bool:
    """Constant-time comparison of a presented key against the stored hash."""
    if name is None or not stored_digest:
        return False
    return hmac.compare_digest(stored_digest, hash_stream_key(key).encode())
