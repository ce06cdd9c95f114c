"""Admission hooks: the platform's own service decides who may publish and who may play.

raylive POSTs JSON `{"action", "stream", "client", "params", "node"}` to the configured URL (the
publish hook once a stream key has been checked, the play hook when a viewer opens a stream's
multivariant playlist or MPD). A 2xx answer admits; any other refuses, and the answer's JSON
`reason` (or its text) is what the publisher or viewer is told. A hook that does not answer within
`timeout_s` admits or refuses as `fail_open` says. Answers (not failures) are kept `cache_s` per
(action, stream, client, params), so a player's retries or a reconnecting encoder do not each ask.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import httpx

log = logging.getLogger(__name__)
MAX_CACHED = 10_000  # answers kept at most (expired ones go first): bounded whoever asks
MAX_REASON = 200


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    action: str  # "publish" or "play"
    stream: str
    client: str  # the publisher's or viewer's address
    params: dict[str, str]  # the stream key's query parameters, or the playlist URL's (never the key)
    node: str


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    reason: str = ""


class AdmissionHook:
    def __init__(self, url: str, timeout_s: float = 2.0, fail_open: bool = False, cache_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.fail_open = fail_open
        self.cache_s = cache_s
        self._cache: dict[tuple[object, ...], tuple[float, Admission]] = {}
        self._client: httpx.AsyncClient | None = None

    async def ask(self, request: AdmissionRequest) -> Admission:
        key = (request.action, request.stream, request.client, tuple(sorted(request.params.items())))
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        try:
            r = await self._client.post(self.url, json=asdict(request))
        except httpx.HTTPError as exc:
            log.warning(
                "%s hook %s did not answer (%s): %s",
                request.action,
                self.url,
                type(exc).__name__,
                "admitted" if self.fail_open else "refused",
            )
            return Admission(self.fail_open, "" if self.fail_open else f"the {request.action} hook did not answer")
        admission = Admission(True) if r.is_success else Admission(False, _reason(request.action, r))
        if self.cache_s > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
            self._cache[key] = (now + self.cache_s, admission)
        return admission


def _reason(action: str, r: httpx.Response) -> str:
    try:
        body = r.json()
        reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
    except ValueError:
        reason = r.text
    reason = " ".join(reason.split())[:MAX_REASON]
    return f"refused by the {action} hook ({r.status_code})" + (f": {reason}" if reason else "")
