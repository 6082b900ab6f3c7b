"""What MetaManager's logic asks of a store, and the rule every store applies.

MetaManager (edge.metamanager.manager) takes any ``ObjectStore``: the node's SQLite store
(edge.metamanager.store) in production, an in-memory one (edge.metamanager.memorystore)
where a process plays many nodes and a disk per node would cost more than what is measured
(``edgehive bench scale``). Both keep the same rule, ``should_replace``: a write applies only
when its resourceVersion is newer than the stored one, or the object was recreated with a
new UID, so that duplicates and reordering on the link leave the store as it should be.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from schemas.kubeobj import meta
from schemas.resource import ResourceKey, newer_version


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


def should_replace(held_rv: str, held_uid: str | None, rv: str | None, uid: str | None) -> bool:
    """Whether a write (``rv``, ``uid``) replaces what is held: a newer version, or another incarnation."""
    return newer(rv, held_rv) or (uid is not None and uid != held_uid)


class ObjectStore(Protocol):
    """Every object the cloud sent one node, by key; what MetaManager reads and writes."""

    def transaction(self) -> AbstractContextManager[Any]:
        """All writes inside apply together or, when the block raises, not at all; transactions nest."""
        ...

    def upsert(self, key: ResourceKey, rv: str | None, obj: Any) -> Outcome:
        """Store ``obj`` unless what is stored is as new or newer (``should_replace``)."""
        ...

    def delete(self, key: ResourceKey, uid: str | None) -> Outcome:
        """Remove ``key``; with a UID, only if the stored object has that UID (or none)."""
        ...

    def get(self, key: ResourceKey) -> Stored | None: ...

    def page(self, kind: str | None, after: str = "", limit: int = 200) -> tuple[list[Stored], str | None]:
        """Objects (of ``kind``, or all) in key order after ``after``; the second value is where the next page
        starts, or None after the last."""
        ...

    def close(self) -> None: ...
