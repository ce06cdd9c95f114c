"""Admission hooks against a real local HTTP receiver: admit, refuse with the receiver's reason,
no answer in time (fail-open and fail-closed), answers kept a few seconds."""

from __future__ import annotations

import asyncio
import time

from raylive.hooks import Admission, AdmissionHook, AdmissionRequest
from tests.receiver import receiver

REQUEST = AdmissionRequest("publish", "cam1", "192.0.2.7", {"team": "a"}, "node1")


def test_admits_refuses_with_the_reason_and_sends_no_key() -> None:
    with receiver() as rx:
        rx.answer = lambda got: (204, {}, 0.0) if got.json()["params"] == {"team": "a"} else (403, {"reason": "team b\nis suspended"}, 0.0)

        async def run() -> tuple[Admission, Admission]:
            hook = AdmissionHook(f"{rx.url}/on_publish", cache_s=0)
            other = AdmissionRequest("publish", "cam1", "192.0.2.7", {"team": "b"}, "node1")
            return await hook.ask(REQUEST), await hook.ask(other)

        admitted, refused = asyncio.run(run())
    assert admitted == Admission(True)
    assert refused == Admission(False, "refused by the publish hook (403): team b is suspended")
    assert rx.received[0].json() == {"action": "publish", "stream": "cam1", "client": "192.0.2.7", "params": {"team": "a"}, "node": "node1"}


def test_a_hook_that_does_not_answer_in_time_admits_or_refuses_as_configured() -> None:
    with receiver() as rx:
        rx.answer = lambda _: (204, {}, 2.0)

        async def run(fail_open: bool) -> tuple[Admission, float]:
            t0 = time.monotonic()
            admission = await AdmissionHook(rx.url, timeout_s=0.5, fail_open=fail_open).ask(REQUEST)
            return admission, time.monotonic() - t0

        closed, closed_s = asyncio.run(run(False))
        opened, opened_s = asyncio.run(run(True))
    assert closed == Admission(False, "the publish hook did not answer") and closed_s < 1.0
    assert opened == Admission(True) and opened_s < 1.0
    with receiver() as rx:
        url = rx.url
    nobody = asyncio.run(AdmissionHook(url, timeout_s=0.5).ask(REQUEST))  # the receiver is gone
    assert nobody == Admission(False, "the publish hook did not answer")


def test_answers_are_kept_for_cache_s_but_failures_are_not() -> None:
    with receiver() as rx:
        answers = iter([(403, {"reason": "no"}, 0.0), (204, {}, 0.0), (500, {}, 0.0)])
        rx.answer = lambda _: next(answers)

        async def run() -> list[Admission]:
            hook = AdmissionHook(rx.url, cache_s=0.3)
            first, cached = await hook.ask(REQUEST), await hook.ask(REQUEST)
            await asyncio.sleep(0.4)
            return [first, cached, await hook.ask(REQUEST), await hook.ask(AdmissionRequest("play", "cam1", "192.0.2.7", {}, "n"))]

        first, cached, later, other = asyncio.run(run())
    assert not first.allowed and cached == first and len(rx.received) == 3
    assert later.allowed and other == Admission(False, "refused by the play hook (500)")
