"""Playback tokens: raylive's own HS256 keys (minted, rotated with an overlap) against a real Redis,
and RS256 keys from a JWKS served by a real local HTTP server (rotated: an unknown kid fetches it again)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa

from raylive import store
from raylive.launcher.redis_server import EmbeddedRedis
from raylive.playback_auth import TokenChecker, mint
from tests.receiver import receiver


@pytest.fixture
def r(tmp_path: Path) -> Iterator[redis.Redis]:
    server = EmbeddedRedis(tmp_path / "redis")
    yield redis.Redis.from_url(server.start())
    server.stop()


def _checker(r: redis.Redis, jwks_url: str = "") -> TokenChecker:
    return TokenChecker(lambda: asyncio.to_thread(store.playback_keys, r), jwks_url, jwks_refresh_s=0.5)


def test_minted_tokens_play_their_stream_only_until_they_expire(r: redis.Redis) -> None:
    kid, secret = store.current_playback_key(r)
    checker = _checker(r)

    async def run() -> list[str | None]:
        good, _ = mint(kid, secret, "cam1", 60)
        bound, _ = mint(kid, secret, "cam1", 60, ip="192.0.2.1")
        old, _ = mint(kid, secret, "cam1", 60, now=time.time() - 120)
        forged = jwt.encode(
            {"sub": "cam1", "exp": int(time.time()) + 60}, b"a guess of 32 bytes or more....!", algorithm="HS256", headers={"kid": kid}
        )
        return [
            await checker.check(good, "cam1", "10.0.0.1"),
            await checker.check(good, "cam2", "10.0.0.1"),
            await checker.check(bound, "cam1", "10.0.0.1"),
            await checker.check(bound, "cam1", "192.0.2.1"),
            await checker.check(old, "cam1", "10.0.0.1"),
            await checker.check(forged, "cam1", "10.0.0.1"),
            await checker.check("", "cam1", "10.0.0.1"),
            await checker.check("not.a.jwt", "cam1", "10.0.0.1"),
            await checker.check(jwt.encode({"sub": "cam1", "exp": 9e9}, "", algorithm="none"), "cam1", "10.0.0.1"),
        ]

    assert asyncio.run(run()) == [
        None,
        "the playback token is for another stream",
        "the playback token is for another address",
        None,
        "the playback token has expired",
        "invalid playback token: Signature verification failed",
        "this stream needs a playback token (?token=)",
        "malformed playback token",
        "playback tokens are HS256",
    ]


def test_a_rotated_key_keeps_playing_for_its_overlap_then_stops(r: redis.Redis) -> None:
    old_kid, old_secret = store.current_playback_key(r)
    checker = _checker(r)
    token, _ = mint(old_kid, old_secret, "cam1", 600)

    async def run() -> list[str | None]:
        out = [await checker.check(token, "cam1", "x")]
        new_kid, new_secret = store.rotate_playback_key(r, overlap_s=1.0)
        fresh, _ = mint(new_kid, new_secret, "*", 600)
        await asyncio.sleep(0.15)  # a replica reloads keys for an unknown kid at most every 0.1 s
        out += [await checker.check(token, "cam1", "x"), await checker.check(fresh, "cam1", "x")]  # a new kid: keys reloaded
        await asyncio.sleep(1.2)
        out.append(await _checker(r).check(token, "cam1", "x"))  # a replica that had not seen it
        return out

    assert asyncio.run(run()) == [None, None, None, "the playback token's key is unknown or retired"]
    assert list(store.playback_keys(r)) == [store.current_playback_key(r)[0]]


def test_rs256_tokens_from_a_jwks_whose_keys_rotate(r: redis.Redis) -> None:
    keys = {"k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def jwks() -> dict[str, object]:
        return {
            "keys": [
                {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), "kid": kid, "use": "sig"} for kid, k in keys.items()
            ]
        }

    with receiver() as server:
        server.answer = lambda _: (200, jwks(), 0.0)
        checker = _checker(r, f"{server.url}/jwks.json")

        def token(kid: str, **claims: object) -> str:
            return jwt.encode({"sub": "cam1", "exp": int(time.time()) + 60, **claims}, keys[kid], algorithm="RS256", headers={"kid": kid})

        async def run() -> list[str | None]:
            out = [await checker.check(token("k1"), "cam1", "x")]
            keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # the platform rotates
            await asyncio.sleep(0.6)  # the JWKS is fetched again at most every jwks_refresh_s
            out.append(await checker.check(token("k2"), "cam1", "x"))
            out.append(await checker.check(token("k1", exp=int(time.time()) - 60), "cam1", "x"))
            return out

        assert asyncio.run(run()) == [None, None, "the playback token has expired"]
        assert len(server.received) == 2  # fetched once, then once more for the new kid
