"""Event webhooks with a real Redis and a real local receiver: signed, in order, each event
delivered until the receiver takes it (it fails, then recovers; the dispatcher restarts in between),
and a stuck receiver never slows the one who emits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from raylive import store
from raylive.launcher.redis_server import EmbeddedRedis
from raylive.webhooks import EndpointQueue, sign, verify
from tests.receiver import Received, receiver

SECRET = b"s3cret"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path / "redis")
    yield server.start()
    server.stop()


def test_signatures_verify_and_tampering_or_replay_does_not() -> None:
    body = b'{"event":"stream.ended"}'
    header = sign(SECRET, body, int(time.time()))
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body + b" ")
    assert not verify(b"other", header, body)
    assert not verify(SECRET, sign(SECRET, body, int(time.time()) - 600), body)  # a replay 10 min later
    assert not verify(SECRET, "v1=deadbeef", body)


def test_every_event_arrives_once_in_order_through_failures_and_a_restart(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    taken: list[dict[str, object]] = []
    with receiver() as rx:
        failures = {"left": 3}

        def answer(got: Received) -> tuple[int, dict[str, object], float]:
            assert verify(SECRET, got.headers["raylive-signature"], got.body)
            assert got.headers["raylive-delivery"] == got.json()["id"]
            if failures["left"] > 0:
                failures["left"] -= 1
                return 503, {}, 0.0
            if got.json()["id"] not in {t["id"] for t in taken}:  # what a receiver does with a retry it already took
                taken.append(got.json())
            return 200, {}, 0.0

        rx.answer = answer

        async def run() -> None:
            conn = aioredis.Redis.from_url(redis_url)
            first = asyncio.create_task(EndpointQueue(conn, rx.url, SECRET, []).run())
            await asyncio.sleep(0.5)  # its group exists: it gets what happens from now on
            for i in range(3):
                store.emit_webhook(r, "stream.published", stream=f"cam{i}")
            t0 = time.monotonic()
            store.emit_webhook(r, "stream.ended", stream="cam0", reason="stopped")
            assert time.monotonic() - t0 < 0.05  # the emitter never waits for a receiver
            await asyncio.sleep(1.0)  # retrying the first event
            first.cancel()  # the dispatcher dies mid-retry ...
            second = asyncio.create_task(EndpointQueue(conn, rx.url, SECRET, []).run())  # ... and starts again
            store.emit_webhook(r, "key.revoked", stream="cam1")
            deadline = time.monotonic() + 20
            # The receiver has the 5th event before the dispatcher's acknowledgement of it: wait for both.
            while (len(taken) < 5 or store.webhook_status(r)[0]["waiting"]) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            second.cancel()

        asyncio.run(run())
    got = [(t["event"], t["data"]) for t in taken]
    assert got == [
        ("stream.published", {"stream": "cam0"}),
        ("stream.published", {"stream": "cam1"}),
        ("stream.published", {"stream": "cam2"}),
        ("stream.ended", {"stream": "cam0", "reason": "stopped"}),
        ("key.revoked", {"stream": "cam1"}),
    ]
    [status] = store.webhook_status(r)
    assert status["url"] == rx.url and status["waiting"] == 0
    kinds = [d["status"] for d in reversed(status["deliveries"])]
    assert kinds[:3] == ["retrying"] * 3 and kinds.count("delivered") >= 5


def test_an_endpoint_gets_only_the_events_it_asked_for(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    with receiver() as rx:

        async def run() -> None:
            task = asyncio.create_task(EndpointQueue(aioredis.Redis.from_url(redis_url), rx.url, SECRET, ["stream.ended"]).run())
            await asyncio.sleep(0.5)
            store.emit_webhook(r, "stream.published", stream="a")
            store.emit_webhook(r, "stream.ended", stream="a", reason="unpublished")
            deadline = time.monotonic() + 10
            while not rx.received and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            task.cancel()

        asyncio.run(run())
    assert [g.json()["event"] for g in rx.received] == ["stream.ended"]
    assert store.webhook_status(r)[0]["waiting"] == 0


def test_without_an_endpoint_nothing_is_queued(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    store.emit_webhook(r, "stream.published", stream="cam1")
    assert r.xlen(store.WEBHOOK_EVENTS) == 0  # a raylive without webhooks keeps no events
