"""Playback tokens for streams whose playback is `signed`.

A token is a JWT in the `token` query parameter of every playback URL (players do not send headers
to segments, so raylive writes it into every URI of the playlists and the MPD it serves). Claims:
`sub` (the stream name, or `*`), `exp`, and optionally `ip` (the viewer's address). Signed with
HS256 by one of raylive's playback keys (`kid` in the header; `POST /api/v1/playback/keys` makes a
new one, and the one before stays valid for an overlap, so nobody watching is cut off), or with
RS256/ES256 by your own keys, published at `playback_auth.jwks_url` (fetched again when a token
names a `kid` it has not seen). raylive mints HS256 tokens itself (`POST .../playback-token`): a
signed URL is the playback URL with one.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import jwt

MAX_VERIFIED = 10_000  # tokens remembered as verified (each re-verified after VERIFIED_FOR_S)
VERIFIED_FOR_S = 30.0  # a retired key's tokens stop working within this after its overlap ends
KEYS_RELOAD_S = 0.1  # an unknown kid reloads the key set at most this often (one HGETALL)
JWKS_REFRESH_S = 30.0  # ... and fetches the JWKS at most this often (PyJWT's default cooldown)
LEEWAY_S = 5


def mint(kid: str, secret: bytes, stream: str, ttl_s: float, ip: str | None = None, now: float | None = None) -> tuple[str, int]:
    """An HS256 playback token for `stream` and its expiry (unix s)."""
    exp = int((time.time() if now is None else now) + ttl_s)
    claims: dict[str, object] = {"sub": stream, "exp": exp}
    if ip:
        claims["ip"] = ip
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid}), exp


class TokenChecker:
    def __init__(
        self, load_keys: Callable[[], Awaitable[dict[str, bytes]]], jwks_url: str = "", jwks_refresh_s: float = JWKS_REFRESH_S
    ) -> None:
        self._load_keys = load_keys
        self._keys: dict[str, bytes] = {}
        self._keys_at = 0.0
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, timeout=5, cooldown_duration=jwks_refresh_s) if jwks_url else None
        self._verified: OrderedDict[str, tuple[float, str, str]] = OrderedDict()  # token -> (until, sub, ip)

    async def check(self, token: str, stream: str, client: str) -> str | None:
        """None when `token` lets `client` play `stream`; else why not (for the 401/403)."""
        if not token:
            return "this stream needs a playback token (?token=)"
        now = time.time()
        known = self._verified.get(token)
        if known is None or known[0] < now:
            reason = await self._verify(token, now)
            if reason is not None:
                return reason
            known = self._verified[token]
        _, sub, ip = known
        if sub not in (stream, "*"):
            return "the playback token is for another stream"
        if ip and ip != client:
            return "the playback token is for another address"
        return None

    async def _verify(self, token: str, now: float) -> str | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return "malformed playback token"
        alg, kid = header.get("alg"), str(header.get("kid", ""))
        key: object
        if alg == "HS256":
            if kid not in self._keys and now - self._keys_at > KEYS_RELOAD_S:
                self._keys, self._keys_at = await self._load_keys(), now
            if kid not in self._keys:
                return "the playback token's key is unknown or retired"
            key = self._keys[kid]
        elif alg in ("RS256", "ES256") and self._jwks is not None:
            try:  # PyJWKClient fetches the JWKS again for a kid it has not seen
                key = (await asyncio.to_thread(self._jwks.get_signing_key, kid)).key
            except jwt.PyJWKClientError as exc:
                return f"the playback token's key is unknown: {exc}"
        else:
            return "playback tokens are HS256" + (", RS256 or ES256" if self._jwks else "")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], options={"require": ["exp", "sub"]}, leeway=LEEWAY_S)  # type: ignore[arg-type]
        except jwt.ExpiredSignatureError:
            return "the playback token has expired"
        except jwt.InvalidTokenError as exc:
            return f"invalid playback token: {exc}"
        until = min(float(claims["exp"]) + LEEWAY_S, now + VERIFIED_FOR_S)
        self._verified[token] = (until, str(claims["sub"]), str(claims.get("ip") or ""))
        self._verified.move_to_end(token)
        while len(self._verified) > MAX_VERIFIED:
            self._verified.popitem(last=False)
        return None
