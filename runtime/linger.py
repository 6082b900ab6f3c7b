"""A sender's linger: a send that comes soon after the previous one waits out the rest of the interval, so that
what arrives meanwhile leaves with it in one batch.

A send after a quiet spell goes at once; only a burst is held, and then at most ``interval_s`` after the burst's
previous send. CloudHub's sender, the controllers' reconcile loop and ``bench edge``'s cloud (which paces as
CloudHub does) each keep one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_LINGER_S = 1.0
"""Longer would hold a node's objects past what any of our latency goals allows."""


@dataclass
class Linger:
    """When the next send may go: ``interval_s`` after the last one (0: always at once)."""

    interval_s: float
    _last: float = field(default=-math.inf, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.interval_s <= MAX_LINGER_S:
            raise ValueError(f"linger must be 0 to {MAX_LINGER_S:g} s, not {self.interval_s}")

    def until(self) -> float:
        """The monotonic time before which a send would still linger."""
        return self._last + self.interval_s

    def hold(self, now: float) -> float:
        """Seconds a send at ``now`` waits (0: it goes at once)."""
        return max(0.0, self.until() - now)

    def sent(self, now: float) -> None:
        """A send went at ``now``: the next one within the interval lingers."""
        self._last = now
