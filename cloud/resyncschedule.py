"""When each connected node's next periodic resync is due. No I/O, no clock: ``now`` comes in.

A resync lists a node's store and sends only the differences (cloud/nodesync.py). It runs at the start of
every session; the periodic one catches what no session change reveals: an update the broker dropped (NATS
2.9.10 can lose a message from a QoS 1 stream, and then nothing on either side knows to send it again) or a
node that moved between broker members without its session at CloudHub ending.

Nodes are spread over the period by a stable hash of their names, so that a fleet that connected all at
once (a broker or controller restart) is not listed all at once again one period later.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

DEFAULT_PERIOD_S = 600.0
"""Ten minutes: how long a lost update may stay missing, against the cost. A resync is one listing page per
kind the controller places (five for EdgeController), each a small query down and an answer of keys and
versions up: with keepalives every 15 s, ten minutes adds about a quarter of a node's keepalive messages, and
at 3,000 nodes a replica lists 5 nodes a second, on threads that mostly wait."""


def spread(node: str) -> float:
    """A stable fraction in [0, 1) for ``node`` (not Python's salted ``hash``)."""
    digest = hashlib.blake2b(node.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class ResyncSchedule:
    """Thread-safe: sessions are reported on the bus's thread, ``due`` is asked on the periodic one."""

    def __init__(self, period_s: float = DEFAULT_PERIOD_S) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, not {period_s}")
        self.period_s = period_s
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def resynced(self, node: str, now: float) -> None:
        """A resync of ``node`` started for another reason (a new session): the next periodic one is a period or
        more away, at the node's place in the spread."""
        with self._lock:
            self._next[node] = now + self.period_s * (1.0 + spread(node))

    def due(self, now: float, connected: Iterable[str]) -> list[str]:
        """The connected nodes due for a periodic resync now (each is then next due one period later); nodes no
        longer connected are forgotten (their next session resyncs them)."""
        nodes = set(connected)
        out = []
        with self._lock:
            for node in [n for n in self._next if n not in nodes]:
                del self._next[node]
            for node in sorted(nodes):
                at = self._next.setdefault(node, now + self.period_s * spread(node))
                if at <= now:
                    out.append(node)
                    self._next[node] = now + self.period_s
        return out
