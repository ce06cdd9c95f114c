"""A live stream's publisher lifecycle, without Ray or Redis: events in, typed decisions out.

One `PublisherLifecycle` per stream, owned by its stream actor, which carries out the decisions
(packaging, playlists, Redis). It holds the stream's time too: `tick(now)` ends a stream whose
publisher dropped and did not come back within the reconnect grace, or whose holder went silent
with its connection and gateway (nobody left to say "released").

The rules:
- `claim` by a publisher with the key: accepted when nobody holds the stream; when a publisher
  dropped within the grace, it is accepted as a *resume* (same playlists after a discontinuity).
- A second claim while a holder is there is refused, unless the holder is not really there: it
  has sent nothing for `stale_s` (a half-open TCP connection; the encoder reconnected first), or
  it came through another gateway and that gateway, asked, no longer has its connection (the
  gateway or its node died: `AskHolder`, then `claim` again with the answer). The replaced holder
  is treated as dropped and the new publisher resumes its playlists.
- `release`: an unpublish, a server stop, a kick or a failure ends the stream now; a dropped
  connection suspends it for the grace.
"""

from __future__ import annotations

from dataclasses import dataclass

CLEAN_END_REASONS = ("unpublished", "stopped")  # why a connection ended on purpose
# A publisher delivers a batch at least every 250 ms while media flows; this much silence means
# its connection is dead even if TCP has not noticed yet.
STALE_PUBLISHER_S = 3.0
NOT_CURRENT_PUBLISHER = "not the current publisher"
VANISHED = "publisher vanished (its connection and gateway are gone)"
DID_NOT_RECONNECT = "publisher did not reconnect"


@dataclass(frozen=True, slots=True)
class Accept:
    resume: bool  # continue the suspended playlists after a discontinuity (else a new publish)
    replaced: str | None = None  # the holder this claim displaced: suspend its output first


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str


@dataclass(frozen=True, slots=True)
class AskHolder:
    """Ask `gateway` whether it still has the holder's connection, then claim again with the answer."""

    gateway: str
    token: str


@dataclass(frozen=True, slots=True)
class Suspend:
    grace_s: float


@dataclass(frozen=True, slots=True)
class End:
    reason: str


class PublisherLifecycle:
    def __init__(self, name: str, reconnect_grace_s: float, stale_s: float = STALE_PUBLISHER_S) -> None:
        self.name = name
        self.grace_s = reconnect_grace_s
        self.stale_s = stale_s
        self.owner: str | None = None  # connection token of the current publisher
        self.owner_gateway = ""
        self.last_push = 0.0
        self.suspended: str | None = None  # token of a dropped publisher we wait for
        self.dropped_at = 0.0
        self.kicked: str | None = None  # the control plane said: the publisher must go
        self.failed: str | None = None  # bad media, over the bitrate limit...

    @property
    def watching(self) -> bool:
        """Whether `tick` has a deadline to watch (someone holds or may resume the stream)."""
        return self.owner is not None or self.suspended is not None

    def claim(self, token: str, gateway: str, now: float, holder_present: bool | None = None) -> Accept | Refuse | AskHolder:
        replaced = None
        if self.owner is not None and self.owner != token:
            if now - self.last_push < self.stale_s:
                if gateway == self.owner_gateway or holder_present:
                    return Refuse(f"stream {self.name} is already being published")
                if holder_present is None:
                    return AskHolder(self.owner_gateway, self.owner)
            replaced = self.owner
            self.suspended, self.dropped_at, self.owner = self.owner, now, None
        resume = self.suspended is not None
        self.owner, self.owner_gateway, self.last_push = token, gateway, now
        self.suspended = self.kicked = self.failed = None
        return Accept(resume, replaced)

    def suspended_after_restart(self, now: float) -> None:
        """A restarted actor whose stream was live: its publisher may reclaim it within the grace."""
        self.suspended, self.dropped_at = "", now

    def push(self, token: str, now: float) -> str | None:
        """None: take the batch; else why not (the gateway closes the publisher with it)."""
        if token != self.owner:
            return NOT_CURRENT_PUBLISHER
        if self.kicked or self.failed:
            return self.kicked or self.failed
        self.last_push = now
        return None

    def fail(self, reason: str) -> None:
        self.failed = reason

    def kick(self, reason: str) -> bool:
        if self.owner is None:
            return False
        self.kicked = reason
        return True

    def release(self, token: str, reason: str, now: float) -> End | Suspend | None:
        if token != self.owner:
            return None
        self.owner = None
        why = self.kicked or self.failed or (reason if reason in CLEAN_END_REASONS or self.grace_s <= 0 else None)
        if why:
            return End(why)
        self.suspended, self.dropped_at = token, now
        return Suspend(self.grace_s)

    def tick(self, now: float) -> End | None:
        if self.owner is not None and now - self.last_push > self.grace_s + self.stale_s:
            self.owner = None
            return End(VANISHED)
        if self.owner is None and self.suspended is not None and now - self.dropped_at >= self.grace_s:
            self.suspended = None
            return End(DID_NOT_RECONNECT)
        return None
