"""Jittered exponential backoff, so that a fleet of nodes does not reconnect in lockstep."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from ``initial`` to ``maximum``, each spread by +/- ``jitter`` (a fraction)."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    attempts: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next(self) -> float:
        base = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        spread = base * self.jitter
        return max(0.0, base + self._rng.uniform(-spread, spread))

    def reset(self) -> None:
        self.attempts = 0


MEMBER_HOP_S = 0.2
"""Mean pause before trying the next member of a broker cluster after one failed (jittered +/- 50%)."""


@dataclass
class MemberRetry:
    """When to try again after a failed connection, over a list of ``members`` broker addresses. Decisions only:
    the clock comes in.

    A failure moves to the next member after a short hop; the backoff grows only once every member has failed in
    turn (growing it on each member meant that, with a member dead and the others briefly refusing while the
    cluster re-elected, the dead member's turn came round at a 6 s delay). And the backoff spaces the *starts* of
    rounds: a round that already took its time (NATS answers a CONNECT it cannot serve after its JetStream
    timeout, 2 s, by closing the connection) waits only what is left of the backoff. Counting the wait from the
    round's end instead put up to a whole backoff between the last refusal before a NATS election and the first
    attempt after it."""

    members: int
    backoff: Backoff
    tried: int = 0
    """Members that failed this time round the list since the last good connect."""
    round_started: float | None = None
    """When this round's first attempt began (the first failure, after a good connect): None while connected."""
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def failed(self, now: float) -> float:
        """A connection failed (refused, timed out, lost) at ``now``: seconds to wait before the next attempt,
        on the next member."""
        if self.round_started is None:
            self.round_started = now
        self.tried += 1
        hop = MEMBER_HOP_S * (0.5 + self._rng.random())
        if self.tried < self.members:
            return hop
        self.tried = 0
        delay = max(hop, self.backoff.next() - (now - self.round_started))
        self.round_started = now + delay
        return delay

    def connected(self) -> None:
        """A good connect: the next failure starts a new list round, from the first backoff."""
        self.backoff.reset()
        self.tried = 0
        self.round_started = None
