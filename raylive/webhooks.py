"""Event webhooks: what happens to streams and keys, POSTed to your endpoints, signed, at least once.

Events are queued by `store.emit_webhook` on a Redis stream in the durable Redis (append-only
file), so neither a restart of raylive nor a receiver that is down for a while loses one. Each
endpoint is a consumer group of its own on that stream: it gets every event in order, one at a time;
a failed delivery is retried with backoff (0.5 s doubling to 60 s) before the next event goes, until
it succeeds or the event is older than `max_age_s`. A slow or dead receiver holds back only its
own queue; streams only append to Redis.

Each request: `POST` of `{"id", "event", "created_at", "data"}` with headers `Raylive-Event`,
`Raylive-Delivery` (the event id: the same on every retry, for the receiver to drop duplicates) and
`Raylive-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (`verify` checks it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from . import store

log = logging.getLogger(__name__)
EVENTS = ("stream.published", "stream.reconnecting", "stream.resumed", "stream.ended", "key.revoked", "recording.ready", "recording.failed")
CONSUMER = "dispatcher"  # one per group: after a restart it finds its undelivered events again
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 60.0
KEPT_DELIVERIES = 100
SIGNATURE_TOLERANCE_S = 300


def endpoint_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def sign(secret: bytes, body: bytes, at: int) -> str:
    mac = hmac.new(secret, f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify(secret: bytes, header: str, body: bytes, now: float | None = None, tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver does: the signature matches and is recent (a replayed request is not)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        at = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, at), f"t={at},v1={fields.get('v1', '')}")


class EndpointQueue:
    """Delivers the event stream to one endpoint, in order (see the module's docstring)."""

    def __init__(
        self, redis: aioredis.Redis, url: str, secret: bytes, events: list[str], timeout_s: float = 5.0, max_age_s: float = 86400.0
    ) -> None:
        self.redis = redis
        self.url = url
        self.id = endpoint_id(url)
        self.group = store.webhook_group(self.id)
        self.secret = secret
        self.events = set(events)  # empty: all
        self.timeout_s = timeout_s
        self.max_age_s = max_age_s
        self.delivered = 0
        self.failed = 0

    async def run(self) -> None:
        try:  # a new endpoint starts with what happens from now on
            await self.redis.xgroup_create(store.WEBHOOK_EVENTS, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.hset(store.WEBHOOK_ENDPOINTS, self.id, self.url)
        async with httpx.AsyncClient(timeout=self.timeout_s) as http:
            cursor = "0"  # first what this consumer was given and never acknowledged (a restart)
            while True:
                try:
                    reply: Any = await self.redis.xreadgroup(self.group, CONSUMER, {store.WEBHOOK_EVENTS: cursor}, count=100, block=1000)
                except RedisError as exc:
                    log.warning("webhooks %s: Redis: %s", self.url, exc)
                    await asyncio.sleep(1.0)
                    continue
                entries = reply[0][1] if reply else []
                if cursor == "0" and not entries:
                    cursor = ">"
                for entry_id, fields in entries:
                    await self._deliver(http, store.text(entry_id), {store.text(k): store.text(v) for k, v in (fields or {}).items()})

    async def _deliver(self, http: httpx.AsyncClient, entry_id: str, fields: dict[str, str]) -> None:
        event = fields.get("event", "")
        if not fields or (self.events and event not in self.events):
            await self.redis.xack(store.WEBHOOK_EVENTS, self.group, entry_id)  # trimmed away, or not asked for
            return
        created = float(fields.get("at", "0"))
        body = json.dumps(
            {"id": entry_id, "event": event, "created_at": created, "data": json.loads(fields.get("data", "{}"))}, separators=(",", ":")
        ).encode()
        delay, attempt = RETRY_FIRST_S, 0
        while True:
            attempt += 1
            headers = {
                "Content-Type": "application/json",
                "Raylive-Event": event,
                "Raylive-Delivery": entry_id,
                "Raylive-Signature": sign(self.secret, body, int(time.time())),
            }
            try:
                r = await http.post(self.url, content=body, headers=headers)
                error = "" if r.is_success else f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
            if not error:
                self.delivered += 1
                await self._record(entry_id, event, "delivered", attempt)
                break
            given_up = time.time() - created > self.max_age_s
            await self._record(entry_id, event, "failed" if given_up else "retrying", attempt, error)
            if given_up:
                self.failed += 1
                log.warning("webhooks %s: gave up on %s %s after %d attempts: %s", self.url, event, entry_id, attempt, error)
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        await self.redis.xack(store.WEBHOOK_EVENTS, self.group, entry_id)

    async def _record(self, entry_id: str, event: str, status: str, attempts: int, error: str = "") -> None:
        row = {"id": entry_id, "event": event, "status": status, "attempts": attempts, "error": error, "at": round(time.time(), 3)}
        key = store.webhook_deliveries_key(self.id)
        try:
            async with self.redis.pipeline(transaction=False) as p:
                p.lpush(key, json.dumps(row))
                p.ltrim(key, 0, KEPT_DELIVERIES - 1)
                await p.execute()
        except RedisError:
            pass  # the delivery log is for people; the delivery itself goes on
