"""Every rule of the publisher lifecycle, without Ray or Redis (raylive/runtime/lifecycle.py)."""

from __future__ import annotations

from raylive.runtime.lifecycle import (
    DID_NOT_RECONNECT,
    NOT_CURRENT_PUBLISHER,
    VANISHED,
    Accept,
    AskHolder,
    End,
    PublisherLifecycle,
    Refuse,
    Suspend,
)

GRACE = 10.0


def live(token: str = "a", gateway: str = "gw1", now: float = 0.0) -> PublisherLifecycle:
    lc = PublisherLifecycle("cam", GRACE)
    assert lc.claim(token, gateway, now) == Accept(resume=False)
    return lc


def test_a_claim_on_a_free_stream_is_a_new_publish() -> None:
    lc = live()
    assert lc.owner == "a" and lc.watching
    assert lc.push("a", 0.25) is None


def test_a_second_claim_through_the_same_gateway_is_refused_while_the_holder_flows() -> None:
    lc = live()
    lc.push("a", 5.0)
    assert lc.claim("b", "gw1", 6.0) == Refuse("stream cam is already being published")
    assert lc.owner == "a"


def test_a_silent_holder_is_replaced_and_its_playlists_resumed() -> None:
    lc = live()
    lc.push("a", 5.0)
    assert lc.claim("b", "gw1", 8.5) == Accept(resume=True, replaced="a")  # 3.5 s of silence: half-open
    assert lc.owner == "b" and lc.push("a", 8.6) == NOT_CURRENT_PUBLISHER


def test_a_claim_through_another_gateway_asks_the_holders_gateway_first() -> None:
    lc = live()
    lc.push("a", 5.0)
    assert lc.claim("b", "gw2", 5.5) == AskHolder("gw1", "a")
    assert lc.owner == "a"  # nothing changed until the answer
    assert lc.claim("b", "gw2", 5.6, holder_present=True) == Refuse("stream cam is already being published")
    # The holder's gateway (or its node) is gone: the holder is not a holder.
    assert lc.claim("b", "gw2", 5.7, holder_present=False) == Accept(resume=True, replaced="a")
    assert lc.owner == "b" and lc.owner_gateway == "gw2"


def test_a_clean_end_ends_now_and_a_drop_suspends_for_the_grace() -> None:
    for reason in ("unpublished", "stopped"):
        lc = live()
        assert lc.release("a", reason, 1.0) == End(reason)
        assert not lc.watching
    lc = live()
    assert lc.release("a", "connection lost", 1.0) == Suspend(GRACE)
    assert lc.release("a", "connection lost", 1.1) is None  # only the holder releases
    assert lc.tick(1.0 + GRACE - 0.1) is None
    assert lc.claim("a2", "gw2", 5.0) == Accept(resume=True)  # reconnected within the grace


def test_a_dropped_publisher_that_does_not_come_back_is_ended_by_the_clock() -> None:
    lc = live()
    lc.release("a", "connection lost", 1.0)
    assert lc.tick(1.0 + GRACE) == End(DID_NOT_RECONNECT)
    assert not lc.watching and lc.tick(100.0) is None
    assert lc.claim("c", "gw1", 101.0) == Accept(resume=False)  # a later publish starts anew


def test_a_holder_gone_with_its_gateway_is_ended_by_the_clock() -> None:
    lc = live()
    lc.push("a", 2.0)
    assert lc.tick(2.0 + GRACE + 2.9) is None
    assert lc.tick(2.0 + GRACE + 3.1) == End(VANISHED)
    assert lc.owner is None


def test_a_kick_refuses_the_next_push_and_ends_on_release() -> None:
    lc = PublisherLifecycle("cam", GRACE)
    assert lc.kick("key revoked") is False  # nobody to kick
    lc = live()
    assert lc.kick("key revoked")
    assert lc.push("a", 1.0) == "key revoked"
    assert lc.release("a", "connection lost", 1.1) == End("key revoked")  # not a reconnect grace


def test_a_failure_ends_without_grace() -> None:
    lc = live()
    lc.fail("ingest bitrate 9000 kb/s is above this server's limit")
    assert lc.push("a", 1.0) == "ingest bitrate 9000 kb/s is above this server's limit"
    assert lc.release("a", "connection lost", 1.1) == End("ingest bitrate 9000 kb/s is above this server's limit")
    lc.claim("b", "gw1", 2.0)
    assert lc.failed is None and lc.push("b", 2.1) is None  # the next publish starts clean


def test_no_grace_means_every_drop_ends() -> None:
    lc = PublisherLifecycle("cam", 0.0)
    lc.claim("a", "gw1", 0.0)
    assert lc.release("a", "connection lost", 1.0) == End("connection lost")


def test_after_an_actor_restart_the_stream_waits_for_its_publisher_then_ends() -> None:
    lc = PublisherLifecycle("cam", GRACE)
    lc.suspended_after_restart(50.0)
    assert lc.watching and lc.tick(55.0) is None
    assert lc.claim("a", "gw1", 56.0) == Accept(resume=True)  # the gateway reclaimed with its connection
    lc = PublisherLifecycle("cam", GRACE)
    lc.suspended_after_restart(50.0)
    assert lc.tick(50.0 + GRACE) == End(DID_NOT_RECONNECT)
