"""Admission hooks with a real raylive and a real local receiver: the platform's service admits or
refuses publishers (after the key check) and viewers (when their session starts), with its reason;
a hook that does not answer within its timeout refuses (fail-closed, this instance's setting)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from raylive.webhooks import verify

from ..conftest import RayliveProcess, start_raylive, stop_raylive
from ..helpers import get, publish, wait_for
from ..receiver import Received, Receiver, receiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RayliveProcess, Receiver]]:
    tmp = tmp_path_factory.mktemp("hooks")
    with receiver() as rx:
        (tmp / "hooks.yaml").write_text(
            f"hooks:\n  publish_url: {rx.url}/on_publish\n  play_url: {rx.url}/on_play\n  timeout_s: 1.0\n  cache_s: 2.0\n"
            f"webhooks:\n  endpoints: [{rx.url}/events]\ntranscode:\n  ladder: [source]\n"
        )
        rl = start_raylive(tmp / "data", args=("--config", str(tmp / "hooks.yaml")))
        try:
            yield rl, rx
        finally:
            stop_raylive(rl)


def _policy(got: Received) -> tuple[int, dict[str, object], float]:
    if got.path == "/events":
        return 204, {}, 0.0
    params = got.json()["params"]
    if got.path == "/on_play":
        return (204, {}, 0.0) if params.get("ticket") == "ok" else (403, {"reason": "buy a ticket"}, 0.0)
    if params.get("slow"):
        return 204, {}, 3.0
    return (403, {"reason": "team b is suspended"}, 0.0) if params.get("team") == "b" else (204, {}, 0.0)


def test_the_publish_and_play_hooks_decide_with_their_reasons(hooked: tuple[RayliveProcess, Receiver]) -> None:
    rl, rx = hooked
    rx.answer = _policy
    key = rl.create_key("hooked")
    ff = publish(rl.rtmp_url(key) + "?team=a", seconds=None)
    try:
        master_url = f"{rl.base_url}/live/hooked/index.m3u8"
        wait_for(lambda: get(f"{master_url}?ticket=ok").status_code == 200, 30, "hooked to go live")
        asked = [r.json() for r in rx.received if r.path == "/on_publish"]
        assert asked[0] == {
            "action": "publish",
            "stream": "hooked",
            "client": "127.0.0.1",
            "params": {"team": "a"},
            "node": asked[0]["node"],
        }
        assert all(key not in r.body.decode() for r in rx.received)  # the key never leaves raylive

        # Refused with the hook's reason; and a hook that keeps the publisher waiting refuses at its timeout.
        for name, query, said in (("teamb", "team=b", b"team b is suspended"), ("slow", "slow=1", b"the publish hook did not answer")):
            t0 = time.monotonic()
            other = publish(rl.rtmp_url(rl.create_key(name)) + f"?{query}", 5)
            assert other.wait(30) != 0
            assert said in other.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() - t0 < 4.0  # ffmpeg's start and handshake, then at most the 1 s timeout

        # Viewers: the hook sees the playlist URL's parameters; the session it admitted is not asked again.
        refused = httpx.get(master_url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)  # not trusted by default
        assert refused.status_code == 403 and refused.json() == {"error": "refused by the play hook (403): buy a ticket"}
        master = get(f"{master_url}?ticket=ok")
        assert master.status_code == 200
        sid = re.findall(r"sid=([\w.-]+)", master.text)[0]
        plays = sum(1 for r in rx.received if r.path == "/on_play")
        assert get(f"{master_url}?sid={sid}").status_code == 200
        assert sum(1 for r in rx.received if r.path == "/on_play") == plays
        play = next(r.json() for r in rx.received if r.path == "/on_play")
        assert play["stream"] == "hooked" and play["client"] == "127.0.0.1" and "sid" not in play["params"]
        assert ff.poll() is None  # the admitted publisher kept going through all of that
    finally:
        ff.terminate()
        ff.wait(10)


def test_stream_and_key_events_reach_the_webhook_signed_and_in_order(hooked: tuple[RayliveProcess, Receiver]) -> None:
    rl, rx = hooked
    rx.answer = _policy
    key = rl.create_key("evented")
    ff = publish(rl.rtmp_url(key) + "?team=a", seconds=3)
    assert ff.wait(30) == 0
    assert rl.cli("keys", "revoke", "evented").returncode == 0

    def events() -> list[tuple[str, dict[str, object]]]:
        got = [r.json() for r in rx.received if r.path == "/events"]
        return [(g["event"], g["data"]) for g in got if g["data"].get("stream") == "evented"]

    wait_for(lambda: len(events()) >= 3, 30, "the published, ended and revoked events", detail=events)
    (published, first), (ended, last), (revoked, _) = events()[:3]
    assert (published, ended, revoked) == ("stream.published", "stream.ended", "key.revoked")
    assert first["client"] == "127.0.0.1" and last["reason"] == "unpublished"
    secret = (rl.data_dir / "webhook_secret").read_bytes().strip()
    sent = [r for r in rx.received if r.path == "/events"]
    assert all(verify(secret, r.headers["raylive-signature"], r.body) for r in sent)
    [endpoint] = rl.api("GET", "/api/v1/webhooks").json()
    assert endpoint["url"] == f"{rx.url}/events" and endpoint["waiting"] == 0
    assert {d["event"] for d in endpoint["deliveries"]} >= {"stream.published", "stream.ended", "key.revoked"}
