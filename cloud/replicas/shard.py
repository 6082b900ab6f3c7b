"""The nodes one replica of a controller sharded by node acts for, and what a handover asks of it. No I/O.

The decision for EdgeController's replicas (cloud/edgecontroller/shard.py says why and how); here, below the
components, because cloud/nodesync.py, which EdgeController and DeviceController share, asks it on every path:
a NodeSync that is not sharded holds ``NodeShard(module, None)``, which owns every node.

Thread-safe for what the threads do: one thread calls ``update`` (the membership loop); any thread may call
``owns``. An answer is cached with the members it was computed from, as one object replaced whole, so a lookup
that races an update caches into the old generation, never a stale answer into the new one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from cloud.replicas.assignment import Handover, NodeAssignment
from cloud.replicas.ownership import owner
from schemas import topics

OWNERS_KEPT = 200_000
"""Ownership answers cached at most; past it the cache starts again rather than grow."""


@dataclass(frozen=True)
class ShardMoves:
    """What one handover asks of the replica, each in node order."""

    resync: tuple[str, ...] = ()
    """Gained, with a live session: list the store and send the differences, as on a new session."""
    watch: tuple[str, ...] = ()
    """Gained, its session over: its grace period towards Unknown starts here (this replica never heard it)."""
    forget: tuple[str, ...] = ()
    """Lost: drop its per-node state; its queued writes are skipped, left to the node's outbox and the new owner."""

    def __bool__(self) -> bool:
        return bool(self.resync or self.watch or self.forget)


class NodeShard:
    """The nodes replica ``identity`` of ``group`` acts for; ``identity`` None: the only one, every node."""

    def __init__(self, group: str, identity: str | None = None) -> None:
        self.group = group
        self.identity = identity
        self.assignment = NodeAssignment(identity) if identity is not None else None
        self._answers: tuple[frozenset[str], dict[str, bool]] = (frozenset(), {})

    @property
    def sharded(self) -> bool:
        return self.assignment is not None

    @property
    def owned(self) -> frozenset[str] | None:
        """The known nodes this replica owns; None: every node (not sharded)."""
        return None if self.assignment is None else self.assignment.owned

    def owns(self, node: str) -> bool:
        """Whether this replica acts for ``node``, known or not (a node registering has no Node yet): always when
        not sharded; never while this replica is not among the live members (its Lease is not good, or it has
        not joined yet); else when rendezvous hashing makes it the owner."""
        if self.assignment is None:
            return True
        members, answers = self._answers
        if self.identity not in members:
            return False
        found = answers.get(node)
        if found is None:
            found = owner(node, members) == self.identity
            if len(answers) >= OWNERS_KEPT:
                answers.clear()
            answers[node] = found
        return found

    def update(self, *, nodes: Iterable[str] | None = None, members: Iterable[str] | None = None) -> Handover:
        """The known nodes or the live members changed (or may have): the handover from the last assignment.
        Not sharded: nothing ever moves."""
        if self.assignment is None:
            return Handover(frozenset(), frozenset())
        handover = self.assignment.update(nodes=nodes, members=members)
        if self.assignment.members != self._answers[0]:
            self._answers = (frozenset(self.assignment.members), {})
        return handover

    def moves(self, handover: Handover, *, sessions: Mapping[str, str], connected: Collection[str]) -> ShardMoves:
        """What ``handover`` asks of this replica, given the session ids announced for every node (``sessions``)
        and the nodes whose last announcement said connected. A gained node never announced has nothing to
        resync or watch: its first session's announcement starts its resync here."""
        gained = sorted(node for node in handover.gained if node in sessions)
        return ShardMoves(resync=tuple(node for node in gained if node in connected),
                          watch=tuple(node for node in gained if node not in connected),
                          forget=tuple(sorted(handover.lost)))

    def topic(self) -> str | None:
        """This replica's own topic for what its nodes send (CloudHub's route to it); None when not sharded."""
        return None if self.identity is None else topics.from_edge(topics.replica_module(self.group, self.identity))

    def query_src(self) -> str:
        """The ``src`` of this replica's queries to nodes: CloudHub answers the inbox of that name, its own."""
        return self.group if self.identity is None else topics.replica_module(self.group, self.identity)
