"""EdgeHub's upstream window: which outbox entries are in flight to the cloud, and in which messages they went.

Delivery is per entry whatever carries it: each entry has its own slot in the window, its own
answer (``parent`` = its id), its own resend timer and its own coalescing in the outbox. A batch
(schemas/batch.py) is only a way of carrying several entries in one MQTT message, to a cloud
that said it takes them (routing.py keeps that permission). The batches are remembered while
any of their members is in flight for one reason: a cloud that refuses a batch answers the
batch's id, not its members', and every member must then go again, alone, so that a member
the cloud cannot take is refused on its own instead of taking its batch-mates down with it
again and again.

No threads and no clock: hub.py calls in under its lock with ``now`` from the monotonic clock,
and publishes outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge.edgehub.outbox import Entry
from schemas.batch import MAX_MEMBERS, MIN_BYTES, pack_encoded
from schemas.envelope import Group

MODULE = "edgehub"


@dataclass(frozen=True)
class Outgoing:
    """One message up the link: a batch of entries, or one entry as its own bytes."""

    payload: bytes
    entries: tuple[Entry, ...]
    batch_id: str | None = None


def pack_entries(node: str, entries: Sequence[Entry], batch_bytes: int | None, max_members: int) -> list[Outgoing]:
    """``entries`` in outbox order, in batches of at most ``max_members`` and ``batch_bytes`` when the cloud takes
    batches (``batch_bytes`` not None), else one message each, as their own stored bytes (exactly what a cloud of
    the previous version expects). Pure work on no shared state: the sender runs it outside its lock."""
    if batch_bytes is None or batch_bytes < MIN_BYTES or max_members < 2 or len(entries) < 2:
        return [Outgoing(entry.payload, (entry,)) for entry in entries]
    members = [(_group(entry), entry.payload) for entry in entries]
    return [Outgoing(item.payload, tuple(entries[i] for i in item.indexes), item.batch_id)
            for item in pack_encoded(node, MODULE, members, max_members=min(max_members, MAX_MEMBERS),
                                     max_bytes=batch_bytes)]


def _group(entry: Entry) -> Group | None:
    """The entry's group, or None (it goes alone) for one stored without it or with one no longer known."""
    try:
        return None if entry.group is None else Group(entry.group)
    except ValueError:
        return None


class Window:
    """What is in flight up the link, by entry id, and the batches that carried them."""

    def __init__(self, size: int, resend_s: float) -> None:
        self.size = size
        self.resend_s = resend_s
        self.inflight: dict[str, float] = {}
        """msg_id -> when last sent (monotonic)."""
        self.sent_seq = 0
        """The outbox sequence number of the newest entry sent since the link came up."""
        self.batches: dict[str, tuple[str, ...]] = {}
        """batch id -> its members' ids, while one of them may still be in flight."""

    def room(self) -> int:
        return self.size - len(self.inflight)

    def stale(self, now: float) -> list[str]:
        """Entries sent longer than ``resend_s`` ago and not answered: each goes again, alone, with its id."""
        return [msg_id for msg_id, sent in self.inflight.items() if now - sent > self.resend_s]

    def sent(self, items: Sequence[Outgoing], now: float) -> None:
        """``items`` are on their way: each entry takes its slot; a batch is remembered by its members."""
        for item in items:
            for entry in item.entries:
                self.inflight[entry.msg_id] = now
                self.sent_seq = max(self.sent_seq, entry.seq)
            if item.batch_id is not None:
                self.batches[item.batch_id] = tuple(entry.msg_id for entry in item.entries)
        if len(self.batches) > self.size:  # forget the batches none of whose members is in flight any more
            self.batches = {batch: members for batch, members in self.batches.items()
                            if any(member in self.inflight for member in members)}

    def resent(self, msg_id: str, now: float) -> None:
        self.inflight[msg_id] = now

    def forget(self, msg_id: str) -> None:
        """The entry left the outbox without an answer reaching here (replaced, evicted)."""
        self.inflight.pop(msg_id, None)

    def acked(self, msg_id: str) -> bool:
        """The cloud answered ``msg_id``: its slot is free. False when it was not in flight."""
        return self.inflight.pop(msg_id, None) is not None

    def refused(self, batch_id: str) -> tuple[str, ...] | None:
        """The cloud refused the batch ``batch_id`` whole (none of it was taken): its members still in flight are
        due again at once, and go alone (resends always do). None when ``batch_id`` is no batch of ours."""
        members = self.batches.pop(batch_id, None)
        if members is None:
            return None
        due = tuple(member for member in members if member in self.inflight)
        for member in due:
            self.inflight[member] = float("-inf")
        return due

    def restart(self) -> None:
        """The link went: on its return everything in the outbox goes again, in order."""
        self.inflight.clear()
        self.batches.clear()
        self.sent_seq = 0
