"""What MetaManager's logic asks of a store, and the rule every store applies.

MetaManager (edge.metamanager.manager) takes any ``ObjectStore``: the node's SQLite store
(edge.metamanager.store) in production, an in-memory one (edge.metamanager.memorystore)
where a process plays many nodes and a disk per node would cost more than what is measured
(``edgehive bench scale``). Both keep the same rules, so that duplicates and reordering on the
link leave the store as it should be:

- ``should_replace``: a write applies only when its resourceVersion is newer than the stored one.
- Tombstones: a delete leaves the key and the delete's resourceVersion behind for a while
  (``TombstoneLimits``), and ``tombstone_refuses`` an update older than it. Without them, an
  update the broker redelivers after the delete (NATS redelivers unacknowledged QoS 1 messages
  after ``ack_wait``, out of order) would bring a deleted object back.

``decide_upsert`` and ``decide_delete`` apply those rules to what a store holds of one key and
return the outcome and the writes to make (a ``Decision``): a store only reads its state, asks,
and writes, so that the two stores cannot drift apart in what they decide.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from schemas.kubeobj import meta
from schemas.resource import ResourceKey, newer_version

_DIGITS = re.compile(r"[0-9]+")


class Outcome(Enum):
    APPLIED = "applied"
    STALE = "stale"  # not newer than what is stored: acknowledged, not applied
    DELETED = "deleted"
    ABSENT = "absent"  # delete of something we do not hold (or hold under another UID)


@dataclass(frozen=True)
class Stored:
    key: ResourceKey
    rv: str
    uid: str | None
    obj: Any


def newer(incoming: str | None, stored: str | None) -> bool:
    """Kubernetes resourceVersions are opaque, but etcd's are integers: compare them as such when they are."""
    if stored is None:
        return True
    if incoming is None:
        return False
    return newer_version(incoming, stored)


def uid_of(obj: Any) -> str | None:
    """``metadata.uid`` of an object, None when it has none (any shape may arrive)."""
    return meta(obj).uid


def revision(rv: str | None) -> int | None:
    """A resourceVersion as etcd's revision (a decimal integer), or None when it is not one. ASCII digits
    only: str.isdigit() is also true for '²', which int() refuses."""
    return int(rv) if rv is not None and _DIGITS.fullmatch(rv) else None


def should_replace(held_rv: str, held_uid: str | None, rv: str | None, uid: str | None) -> bool:
    """Whether a write (``rv``, ``uid``) replaces what is held.

    When both resourceVersions are integers (etcd's revisions, global to the cluster), only a greater one
    replaces, whatever the UIDs: a recreated object always gets a greater revision than any incarnation
    before it, so an older incarnation's update that the broker redelivers late is refused too.
    When either is not an integer (opaque versions: another store behind the API server), there is no order
    to trust and the write falls back to applying, unless it is a duplicate (the same version of the same
    incarnation).
    """
    incoming, held = revision(rv), revision(held_rv)
    if incoming is not None and held is not None:
        return incoming > held
    return (rv or "0") != held_rv or (uid is not None and uid != held_uid)


def delete_is_stale(held_rv: str, rv: str | None) -> bool:
    """Whether a delete is older than the object held (a redelivered delete of what was placed on the node
    again and updated since). Integer resourceVersions only; otherwise the delete applies. "0" is no version
    (etcd's revisions start at 1): EdgeController deletes a pod the cluster no longer has, which a node
    reported running, at "0", knowing no version of it."""
    incoming, held = revision(rv), revision(held_rv)
    return incoming is not None and incoming > 0 and held is not None and incoming < held


@dataclass(frozen=True)
class TombstoneLimits:
    """How many deletes a store remembers, and for how long.

    A tombstone only has to outlive the messages that could still arrive older than its delete: those the
    broker redelivers (after ``ack_wait``, 30 s on NATS) and those queued for a node that was away, which a
    new session's resync puts right anyway. A day and 10,000 keys cover that with a wide margin for a few
    hundred kilobytes.
    """

    max_count: int = 10_000
    max_age_s: float = 86_400.0


DEFAULT_LIMITS = TombstoneLimits()


def tombstone_refuses(tomb_rv: int, rv: str | None) -> bool:
    """Whether an update of a deleted key is older than its delete.

    Equal is not older: the cloud deletes an object that is no longer placed on this node with the version
    it last sent, and when a pod brings it back unchanged, sends that same version again (a resync deletes
    and re-adds that way too). A version that is not an integer is applied (no order to trust).
    """
    incoming = revision(rv)
    return incoming is not None and incoming < tomb_rv


@dataclass(frozen=True)
class Version:
    """What the decisions read of the object a store holds under a key."""

    rv: str
    uid: str | None


@dataclass(frozen=True)
class Row(Version):
    """An object to store under the key: its version, and its msgpack encoding (carried through, never read)."""

    value: bytes


@dataclass(frozen=True)
class Decision:
    """What an upsert or a delete comes to, and the writes a store makes for it (none when refused).

    The store applies them all in one transaction, in any order: they touch the row and the tombstone of
    the one key the decision was made for.
    """

    outcome: Outcome
    put: Row | None = None
    """The row to store, replacing the one held."""
    remove: bool = False
    """Remove the row held."""
    tombstone: int | None = None
    """The tombstone to put (its resourceVersion; the store stamps it with the time and then prunes)."""
    drop_tombstone: bool = False
    """Drop the key's tombstone, even one past its age that the store still keeps."""


def decide_upsert(held: Version | None, tombstone: int | None, rv: str | None, uid: str | None,
                  value: bytes) -> Decision:
    """An upsert at ``rv`` of the incarnation ``uid`` (encoded as ``value``), given what is held under its key
    and the key's tombstone (one within its age, else None).

    What is held orders it (``should_replace``); with nothing held, the tombstone does (``tombstone_refuses``),
    and once the object is stored again, its version orders from then on, so the tombstone goes. No version
    is stored as "0".
    """
    if held is not None:
        if not should_replace(held.rv, held.uid, rv, uid):
            return Decision(Outcome.STALE)
        return Decision(Outcome.APPLIED, put=Row(rv or "0", uid, value))
    if tombstone is not None and tombstone_refuses(tombstone, rv):
        return Decision(Outcome.STALE)
    return Decision(Outcome.APPLIED, put=Row(rv or "0", uid, value), drop_tombstone=True)


def decide_delete(held: Version | None, tombstone: int | None, uid: str | None, rv: str | None) -> Decision:
    """A delete of the incarnation ``uid`` (None: whichever is held) at ``rv``, given what is held under its
    key and the key's tombstone (one within its age, else None).

    Another incarnation held (a recreated one: its UID differs and it has one) is left alone, as ABSENT; one
    newer than the delete too, as STALE (``delete_is_stale``). Otherwise the held one goes, and an integer
    ``rv`` other than "0" (which would refuse nothing) becomes the tombstone, whether or not anything was
    held; an older delete does not lower a tombstone.
    """
    if held is not None:
        if uid is not None and held.uid not in (uid, None):
            return Decision(Outcome.ABSENT)
        if delete_is_stale(held.rv, rv):
            return Decision(Outcome.STALE)
    incoming = revision(rv)
    return Decision(Outcome.DELETED if held is not None else Outcome.ABSENT, remove=held is not None,
                    tombstone=max(incoming, tombstone or 0) if incoming else None)


class ObjectStore(Protocol):
    """Every object the cloud sent one node, by key; what MetaManager reads and writes."""

    def transaction(self) -> AbstractContextManager[Any]:
        """All writes inside apply together or, when the block raises, not at all; transactions nest."""
        ...

    def upsert(self, key: ResourceKey, rv: str | None, obj: Any) -> Outcome:
        """Store ``obj`` unless what is stored is as new or newer (``should_replace``), or the key's tombstone
        is newer (``tombstone_refuses``): STALE then. Storing it drops the key's tombstone."""
        ...

    def delete(self, key: ResourceKey, uid: str | None, rv: str | None = None) -> Outcome:
        """Remove ``key``; with a UID, only if the stored object has that UID (or none); with ``rv``, only if
        the stored object is not newer (``delete_is_stale``: STALE). An integer ``rv`` is kept as the key's
        tombstone, whether or not anything was stored."""
        ...

    def tombstone(self, key: ResourceKey) -> int | None:
        """The resourceVersion of the key's last delete while it is remembered, else None."""
        ...

    def get(self, key: ResourceKey) -> Stored | None: ...

    def page(self, kind: str | None, after: str = "", limit: int = 200) -> tuple[list[Stored], str | None]:
        """Objects (of ``kind``, or all) in key order after ``after``; the second value is where the next page
        starts, or None after the last."""
        ...

    def close(self) -> None: ...
