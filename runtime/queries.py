"""What both hubs do alike with what passes straight through them: which ops do, and who asked which query.

CloudHub and EdgeHub each keep a reliable path (CloudHub's per-node queues, EdgeHub's
outbox) for objects and state. Answers, queries and keepalives bypass it: the other side
resends what it does not hear an answer to, a query has a caller waiting with its own
timeout, and a keepalive is worth nothing late. A query's answer comes back with the
query's id as its ``parent`` and must reach the module that asked: the hub that passed the
query on remembers the asker, for long enough to outlast any caller's wait.
"""

from __future__ import annotations

from schemas.envelope import Envelope, Op

DIRECT_OPS = frozenset({Op.RESPONSE, Op.ERROR, Op.QUERY, Op.KEEPALIVE})
"""Ops a hub passes straight on, outside its reliable path."""

QUERY_MEMORY_S = 120.0
"""How long a hub remembers who asked a query; callers wait seconds (bus requests default to 10 s)."""


class QueryMemory:
    """Query id -> the module that asked it, forgotten after ``keep_s`` or once answered.

    Not thread-safe: the hub that owns one calls it under its own lock. ``now`` is the caller's
    monotonic clock, so that a test can move time.
    """

    def __init__(self, keep_s: float = QUERY_MEMORY_S) -> None:
        self.keep_s = keep_s
        self._asked: dict[str, tuple[str, float]] = {}  # query id -> (asker, when); oldest first

    def __len__(self) -> int:
        return len(self._asked)

    def remember(self, query: Envelope, now: float) -> None:
        """``query`` is passed on: its answer goes to ``query.src``."""
        self._forget_until(now - self.keep_s)
        self._asked.pop(query.id, None)  # asked again under the same id: it is the newest now
        self._asked[query.id] = (query.src, now)

    def asker(self, answer: Envelope, now: float) -> str | None:
        """The module that asked the query ``answer`` answers, or None when ``answer`` answers no query
        remembered here (or was too late); the query is forgotten either way."""
        if answer.op not in (Op.RESPONSE, Op.ERROR) or answer.parent is None:
            return None
        self._forget_until(now - self.keep_s)
        asked = self._asked.pop(answer.parent, None)
        return None if asked is None else asked[0]

    def _forget_until(self, cutoff: float) -> None:
        """Entries are in the order they were made, so the expired ones are at the front."""
        while self._asked:
            query_id, (_, when) = next(iter(self._asked.items()))
            if when >= cutoff:
                return
            del self._asked[query_id]
