"""Who may play (the playback app's gatekeeper): a signed stream's token on every request
(raylive/playback_auth.py) and the play hook when a viewer's session starts (raylive/hooks.py)."""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aioredis
from starlette.requests import Request

from .. import store
from ..hooks import AdmissionHook, AdmissionRequest
from ..playback_auth import TokenChecker
from ..settings import HookSettings

PLAYBACK_MODE_TTL_S = 2.0  # how stale a replica's idea of a stream's playback mode may be
MAX_KNOWN_STREAMS = 10_000


class AccessRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PlaybackAccess:
    def __init__(self, redis_url: str, state: aioredis.Redis, hooks: HookSettings | None, node_id: str) -> None:
        hooks = hooks or HookSettings()
        self.state = state
        self.node_id = node_id
        self.client_header = hooks.client_address_header.lower()
        keys = redis.Redis.from_url(redis_url)  # the playback keys, reloaded for an unknown kid
        self.tokens = TokenChecker(lambda: asyncio.to_thread(store.playback_keys, keys), hooks.jwks_url)
        self.play_hook = AdmissionHook(hooks.play_url, hooks.timeout_s, hooks.fail_open, hooks.cache_s) if hooks.play_url else None
        self._signed_streams: dict[str, tuple[float, bool]] = {}  # name -> (until, signed)

    async def token(self, request: Request, name: str) -> str:
        """The token this request plays `name` with ("" for a public stream); AccessRefused if none fits."""
        if not await self._signed(name):
            return ""
        token = request.query_params.get("token", "")
        reason = await self.tokens.check(token, name, self.client(request))
        if reason is not None:
            raise AccessRefused(403 if token else 401, reason)
        return token

    async def admit(self, request: Request, name: str) -> None:
        """Ask the play hook (if any) before a viewer's session starts; AccessRefused (403) if refused."""
        if self.play_hook is None:
            return
        params = {k: v for k, v in request.query_params.items() if k not in ("sid", "token")}
        admission = await self.play_hook.ask(AdmissionRequest("play", name, self.client(request), params, self.node_id))
        if not admission.allowed:
            raise AccessRefused(403, admission.reason)

    def client(self, request: Request) -> str:
        """The viewer's address (`hooks.client_address_header`): the last entry is the one the
        proxy in front added; earlier ones are whatever the viewer sent."""
        if self.client_header:
            forwarded = request.headers.get(self.client_header, "").split(",")[-1].strip()
            if forwarded:
                return forwarded
        return request.client.host if request.client else ""

    async def _signed(self, name: str) -> bool:
        """Whether `name`'s playback needs a token (asked of Redis every few seconds per stream)."""
        now = time.monotonic()
        known = self._signed_streams.get(name)
        if known is None or known[0] < now:
            if len(self._signed_streams) > MAX_KNOWN_STREAMS:  # bounded, whatever names are asked for
                self._signed_streams.clear()
            mode = await self.state.hget(store.stream_key(name), store.PLAYBACK_FIELD)
            known = self._signed_streams[name] = (now + PLAYBACK_MODE_TTL_S, mode == b"signed")
        return known[1]
