"""One node's downstream queue: keyed by object, newest version wins, resent until acknowledged.

What matters to an edge node is the latest state of each object, not every step
on the way: an update that has not left yet is replaced by a newer one, and a
delete replaces everything before it. An entry stays until the edge's
``response`` names its message id; it is resent with that same id after 5 s,
then with a growing delay, so a node that is slow to answer is not flooded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from schemas.envelope import Envelope, Op
from schemas.resource import ResourceKey, newer_version

FIRST_RESEND_S = 5.0
MAX_RESEND_S = 60.0


def newer(incoming: str | None, current: str | None) -> bool:
    if current is None or incoming is None:
        return True
    return newer_version(incoming, current)


@dataclass
class Entry:
    envelope: Envelope
    sent_at: float | None = None
    attempts: int = 0

    def due(self, now: float) -> bool:
        if self.sent_at is None:
            return True
        return bool(now - self.sent_at >= min(MAX_RESEND_S, FIRST_RESEND_S * 2 ** max(0, self.attempts - 1)))


class NodeQueue:
    def __init__(self, window: int) -> None:
        self.window = window
        self._entries: OrderedDict[ResourceKey, Entry] = OrderedDict()
        self._by_id: dict[str, ResourceKey] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def inflight(self) -> int:
        return sum(1 for e in self._entries.values() if e.sent_at is not None)

    def put(self, envelope: Envelope) -> bool:
        """Queue ``envelope``; False when an entry already holds a newer version of the object."""
        assert envelope.res is not None, "downstream objects need a resource key"
        key = envelope.res
        current = self._entries.get(key)
        if current is not None:
            if Op.DELETE not in (envelope.op, current.envelope.op) and not newer(envelope.rv, current.envelope.rv):
                return False
            self._by_id.pop(current.envelope.id, None)
            del self._entries[key]
        self._entries[key] = Entry(envelope)
        self._by_id[envelope.id] = key
        return True

    def due(self, now: float) -> list[Envelope]:
        """What to send now: resends that are due, then new entries while the window has room."""
        out: list[Envelope] = []
        room = self.window - self.inflight
        for entry in self._entries.values():
            if entry.sent_at is not None:
                if entry.due(now):
                    out.append(entry.envelope)
            elif room > 0:
                out.append(entry.envelope)
                room -= 1
        return out

    def mark_sent(self, envelope: Envelope, now: float) -> None:
        key = self._by_id.get(envelope.id)
        if key is not None:
            entry = self._entries[key]
            entry.sent_at = now
            entry.attempts += 1

    def ack(self, msg_id: str) -> Envelope | None:
        """The edge answered ``msg_id``: the entry is done (unless a newer one replaced it meanwhile)."""
        key = self._by_id.pop(msg_id, None)
        if key is None:
            return None
        return self._entries.pop(key).envelope

    def reset_sent(self) -> None:
        """The node reconnected: what was in flight goes again at once."""
        for entry in self._entries.values():
            entry.sent_at = None
            entry.attempts = 0
