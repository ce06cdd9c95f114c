"""`WebhookDispatcher`: the one actor that delivers event webhooks (raylive/webhooks.py), one queue
per endpoint on a thread of its own. Started by `raylive up` when `webhooks.endpoints` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import ray
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .. import store
from ..webhooks import EndpointQueue

log = logging.getLogger(__name__)


class WebhookDispatcher:
    def __init__(self, redis_url: str, endpoints: list[str], events: list[str], secret: bytes, timeout_s: float, max_age_s: float) -> None:
        self.redis_url = redis_url
        self.queues: list[EndpointQueue] = []
        self._args = (endpoints, events, secret, timeout_s, max_age_s)
        self._started = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._main(),), name="webhooks", daemon=True).start()

    async def _main(self) -> None:
        endpoints, events, secret, timeout_s, max_age_s = self._args
        redis = aioredis.Redis.from_url(self.redis_url)
        self.queues = [EndpointQueue(redis, url, secret, events, timeout_s, max_age_s) for url in endpoints]
        for eid in await redis.hkeys(store.WEBHOOK_ENDPOINTS):  # endpoints no longer configured go
            if store.text(eid) not in {q.id for q in self.queues}:
                await redis.hdel(store.WEBHOOK_ENDPOINTS, eid)
                with contextlib.suppress(ResponseError):
                    await redis.xgroup_destroy(store.WEBHOOK_EVENTS, store.webhook_group(store.text(eid)))
        tasks = [asyncio.create_task(q.run(), name=q.url) for q in self.queues]
        self._started.set()
        while tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # a queue that failed (Redis refused its group, say) starts again
                log.error("webhooks %s stopped: %r; restarting it", task.get_name(), task.exception())
                tasks.remove(task)
                queue = next(q for q in self.queues if q.url == task.get_name())
                await asyncio.sleep(1.0)
                tasks.append(asyncio.create_task(queue.run(), name=queue.url))

    def stats(self) -> dict[str, Any]:
        self._started.wait(10)
        return {q.url: {"delivered": q.delivered, "failed": q.failed} for q in self.queues}


WebhookDispatcherActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)(WebhookDispatcher)  # type: ignore[call-overload]
