"""CloudHub as one of N replicas: which nodes this one serves, and keeping that current.

:class:`NodeAssignment` (cloud/replicas/assignment.py, shared with EdgeController's shards) is the decision,
without I/O: the edge nodes known to the API and the live members in, the nodes gained and lost out (rendezvous
hashing, cloud/replicas/ownership.py). :class:`Membership` runs it: a Node informer for the node names, a
LeaseKeeper (over a watch of the group's Leases) for the members, and a thread that renews the Lease every third
of its duration, recounts at the moments the members can change (a Lease running out, a joiner's delay passing:
LeaseKeeper.next_change) or when the nodes or the watched Leases change, and hands each change to the hub, which
moves the node's subscription and session (hub.py).

The nodes are the Node objects with the edge role label (a node's link topics are named after its Node), and
the nodes whose bridges said hello on the cloud broker (retained, one per node: topics.link_hello). A node that
has never registered has no Node from EdgeController yet; its hello makes its owner subscribe to its up topic,
and EdgeHub's resend of the unanswered registration then reaches it. (The join endpoint also creates a joining
node's Node, cloud/joinserver/nodeobject.py, which a bridge too old to say hello needs.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cloud.informer import Informer
from cloud.kube import Kube
from cloud.packed import Packed
from cloud.replicas.assignment import Handover, NodeAssignment
from cloud.replicas.leases import LeaseKeeper
from cloud.replicas.leasewatch import LeaseWatch
from cloud.replicas.renewalgate import RenewalGate
from schemas import kinds
from schemas.kubeobj import EDGE_ROLE_LABEL, meta

log = logging.getLogger(__name__)

GROUP = "cloudhub"
RECOUNT_SLACK_S = 0.01
"""A recount due at the moment the members change runs this much after it, so that it counts the change."""
__all__ = ["GROUP", "Handover", "Membership", "NodeAssignment", "is_edge_node"]


def is_edge_node(obj: dict[str, Any]) -> bool:
    return EDGE_ROLE_LABEL in (meta(obj).labels or {})


class Membership:
    """Keeps this replica's Lease and node set current and calls ``apply`` with every handover (on its own
    thread, never two at once).

    ``on_broker`` says whether the replica is on the cloud broker (``Connection.on_broker``: connected, or
    accepted again and still re-making its subscriptions, for a bounded time). A replica that is not cannot
    serve its nodes, so it does not renew its Lease then: were it to, it would keep its nodes from the others
    while they hear nothing. Its Lease runs out, it drops them, the others take them; when it is back on the
    broker it renews and joins again (a new acquireTime, so the join delay applies). It renews once at the
    moment it leaves, so the Lease runs a whole duration from then (cloud/replicas/renewalgate.py says why);
    :meth:`wake` makes that moment a step.
    """

    def __init__(self, kube: Kube, identity: str, duration_s: int, apply: Callable[[Handover], None],
                 on_broker: Callable[[], bool] = lambda: True) -> None:
        self.keeper = LeaseKeeper(kube, group=GROUP, identity=identity, duration_s=duration_s,
                                  view=LeaseWatch(kube, GROUP, read_timeout_s=float(duration_s)))
        self.assignment = NodeAssignment(identity)
        self._apply = apply
        self._gate = RenewalGate(on_broker, self.keeper)
        self._lock = threading.Lock()
        self._nodes: set[str] = set()
        self._heard: set[str] = set()
        self._nodes_changed = True
        """The nodes or the hellos changed since the loop last read them (under ``_lock``): only then does it
        build their union and hand it to the assignment. At 100,000 nodes the union, its copy and the comparison
        with the last one cost 12-24 ms a pass, twice a second, for a membership that almost never changes."""
        self._stop = threading.Event()
        self._changed = threading.Event()
        self.keeper.view.subscribe(self._changed.set)
        self.informer = Informer(kube, kinds.NODE, self._on_node)
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)

    def start(self) -> None:
        self.keeper.start()
        self.informer.start()
        self._thread.start()

    def wake(self) -> None:
        """Look now (the link to the broker changed), not at the next moment due."""
        self._changed.set()

    def close(self) -> None:
        """Leave on purpose: serve nothing, then delete the Lease so that the others take the nodes now."""
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=10)
        self.informer.stop()
        self._apply(self.assignment.update(members=()))
        self.keeper.release()

    def _on_node(self, _kind: str, event: str, obj: dict[str, Any], _packed: Packed) -> None:
        name = meta(obj).name
        if not name:
            return
        with self._lock:
            before = name in self._nodes
            if event != "DELETED" and is_edge_node(obj):
                self._nodes.add(name)
            else:
                self._nodes.discard(name)
            changed = before != (name in self._nodes)
            self._nodes_changed = self._nodes_changed or changed
        if changed:
            self._changed.set()

    def heard(self, node: str, *, present: bool = True) -> None:
        """A node's bridge said hello (``present``), or its hello was cleared."""
        with self._lock:
            before = node in self._heard
            if present:
                self._heard.add(node)
            else:
                self._heard.discard(node)
            self._nodes_changed = self._nodes_changed or before != present
        if before != present:
            self._changed.set()

    def nodes_if_changed(self) -> set[str] | None:
        """The nodes to share (edge Nodes and hellos) if they changed since the last call, else None (the
        assignment keeps the ones it has)."""
        with self._lock:
            if not self._nodes_changed:
                return None
            self._nodes_changed = False
            return self._nodes | self._heard

    def _run(self) -> None:
        next_renewal = 0.0
        while not self._stop.is_set():
            now = time.time()
            due = now >= next_renewal
            if self._gate.renew(due):
                members = self.keeper.tick()
                next_renewal = now + self.keeper.renew_interval_s
            elif due:  # off the broker: look again soon, to renew once it is back
                next_renewal = now + min(0.5, self.keeper.renew_interval_s)
                self._gate.held_back(now)
                members = self.keeper.observe()  # a member joining meanwhile takes its nodes from us too
            else:  # between renewals: a Lease that ran out ends the serving on time
                members = self.keeper.members()
            handover = self.assignment.update(nodes=self.nodes_if_changed(), members=members)
            if handover:
                log.info("replica %s: %d nodes now (gained %d, lost %d) over members %s", self.keeper.identity,
                         len(self.assignment.owned), len(handover.gained), len(handover.lost),
                         sorted(self.assignment.members))
                self._apply(handover)
            wake_at = min(next_renewal, self.keeper.next_change() + RECOUNT_SLACK_S)
            self._changed.wait(timeout=max(0.01, wake_at - time.time()))
            self._changed.clear()
