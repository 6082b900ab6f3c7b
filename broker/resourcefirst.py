"""Resource traffic first: stream frames wait at the bridge while the node's resource messages are in its hands.

A ``kubectl cp`` or a port-forward moves as many bytes as the link takes, and each of its frames costs the
brokers and the bridge far more than a ConfigMap's envelope; carried side by side, the frames take the
brokers' time that the envelopes and their acknowledgements need (bench stream: delivery during a 50 MB cp
fell to 0.5-0.8 of the quiet rate). So the bridge passes a stream frame on only when no resource message is
held: taken from one broker and not yet acknowledged by the other. Stream flow control does the rest: a
stream whose frames wait runs out of credit, and its source stops reading until they move.

A wait is bounded (``max_wait_s`` per frame): a stream under a steady flow of resources still moves, slowly,
instead of timing out, and a resource message that is never acknowledged (its broker is gone) cannot stop
the node's streams for longer than that per frame.
"""

from __future__ import annotations

import threading
import time

MAX_WAIT_S = 0.25
LINGER_S = 0.02
"""How long after a resource message passed the link still counts as busy: the next one of a burst (a
rollout's objects, a node's statuses) is usually already on its way through the other broker and the
node's components, and a frame let in between would sit in front of it."""


class ResourceTraffic:
    def __init__(self, max_wait_s: float = MAX_WAIT_S, linger_s: float = LINGER_S) -> None:
        self.max_wait_s = max_wait_s
        self.linger_s = linger_s
        self._held = 0
        self._last_passed = -linger_s
        self._cond = threading.Condition()

    def taken(self) -> None:
        """A resource message was taken from a broker."""
        with self._cond:
            self._held += 1

    def passed(self) -> None:
        """The other broker acknowledged one."""
        with self._cond:
            self._held = max(0, self._held - 1)
            self._last_passed = time.monotonic()

    def wait_quiet(self) -> bool:
        """Wait (at most ``max_wait_s``) until no resource message is held and none passed for ``linger_s``;
        False when the wait ran out."""
        deadline = time.monotonic() + self.max_wait_s
        with self._cond:
            while True:
                now = time.monotonic()
                quiet_in = 0.0 if not self._held else self.linger_s
                quiet_in = max(quiet_in, self._last_passed + self.linger_s - now)
                if quiet_in <= 0:
                    return True
                if now >= deadline:
                    return False
                # Woken by nothing: a resource passing only moves the time to wait for; poll at the linger.
                self._cond.wait(min(quiet_in, deadline - now))

    @property
    def held(self) -> int:
        return self._held
