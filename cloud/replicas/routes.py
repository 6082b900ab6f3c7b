"""Where CloudHub sends a node's messages for a controller sharded by node: the owner replica's own topic. No I/O.

EdgeController's replicas share the nodes as CloudHub's do (cloud/edgecontroller/shard.py): one Lease each in
group ``edgecontroller``, and rendezvous hashing over the live members. CloudHub reads the same Leases and
computes the same owner, so each message from a node is decoded by one EdgeController replica, not by all of
them (every replica hearing one inbox and dropping what it does not own costs a decode per replica per
message: the cost branch ``fanout`` took out of CloudHub's replicas).

The route is an optimisation, never what makes the work correct. The replica that receives a message keeps it
only if it owns the node by its own count; CloudHub's view lags its reading of the Leases, so during a handover
a message can reach a replica that has just let the node go (or has not taken it yet). That replica drops it
unanswered, and the node's outbox sends it again (EdgeHub's ``resend_s``), by when the route has moved. So:

- Members are counted as they count themselves (:func:`cloud.replicas.leases.serving`): a joiner from the moment
  it takes its nodes, a dead member until its Lease expires (when the others take them).
- With no member counted, or a reading not known current for ``stale_after_s`` (the API cannot be read), the
  route is the controller's shared topic ``topics.from_edge(module)``: every replica subscribes to it too and
  keeps what it owns. That is also where a CloudHub that knows nothing of shards (or a lone EdgeController)
  sends everything, so the two versions keep working together.
- The owners are cached per node and forgotten when the counted members change: a message costs one lookup,
  not a hash per member.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from cloud.replicas.leases import TAKE_AFTER_S, ReplicaLease, join_delay, serving
from cloud.replicas.ownership import owner
from schemas import topics

OWNERS_KEPT = 200_000
"""Owners cached at most (one per node of a large fleet); past it the cache starts again rather than grow."""


class ReplicaRoutes:
    """The topic for each node's messages to ``module``, from the last reading of its replicas' Leases. Not
    thread-safe: CloudHub calls it under the lock its router is called under."""

    def __init__(self, module: str, *, stale_after_s: float) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, not {stale_after_s}")
        self.module = module
        self.shared = topics.from_edge(module)
        self.stale_after_s = stale_after_s
        self.members: frozenset[str] = frozenset()
        """The replicas counted at the last ``refresh``."""
        self._leases: list[ReplicaLease] = []
        self._read_at: float | None = None
        self._owners: dict[str, str] = {}

    def observe(self, leases: Iterable[ReplicaLease], now: float, read_at: float | None = None) -> bool:
        """A reading of the group's Leases at ``now`` (wall clock, as the Leases' times), known current as of
        ``read_at`` (default: ``now``; a watch's last event); True when the counted members changed."""
        self._leases = list(leases)
        self._read_at = now if read_at is None else read_at
        return self.refresh(now)

    def refresh(self, now: float) -> bool:
        """Count the members at ``now`` from the last reading (a joiner starts, an expired one stops, without a
        new reading); True when they changed. A reading older than ``stale_after_s`` counts nobody."""
        fresh = self._read_at is not None and now - self._read_at <= self.stale_after_s
        members = frozenset(filter(self._routable, serving(self._leases, now))) if fresh else frozenset()
        if members == self.members:
            return False
        self.members = members
        self._owners.clear()
        return True

    def _routable(self, identity: str) -> bool:
        """Whether ``identity`` names a topic: a replica's own settings refuse one that does not, so a Lease
        holding such a name (written by hand) is nobody to route to."""
        try:
            topics.replica_module(self.module, identity)
        except ValueError:
            return False
        return True

    def next_change(self, now: float) -> float:
        """The next moment the counted members can change without a new reading (a joiner's start, a Lease's
        expiry, the reading going stale): when to call ``refresh`` again. ``math.inf`` with nothing read."""
        if self._read_at is None:
            return math.inf
        moments = [self._read_at + self.stale_after_s]
        for lease in self._leases:
            moments += [lease.acquired + join_delay(lease.duration_s) + TAKE_AFTER_S, lease.expires]
        return min((moment for moment in moments if moment > now), default=math.inf)

    def owner(self, node: str) -> str | None:
        """The replica that owns ``node`` by the members last counted; None when none is counted."""
        if not self.members:
            return None
        found = self._owners.get(node)
        if found is None:
            found = owner(node, self.members)
            assert found is not None  # members is not empty
            if len(self._owners) >= OWNERS_KEPT:
                self._owners.clear()
            self._owners[node] = found
        return found

    def topic(self, node: str) -> str:
        """Where ``node``'s messages for the module go: its owner's topic, or the shared one when no owner is
        known (every replica hears that, and the owner keeps it)."""
        found = self.owner(node)
        return self.shared if found is None else topics.from_edge(topics.replica_module(self.module, found))
