"""EdgeController sharded by node over N active replicas: which nodes this replica acts for. Decisions only, no I/O.

Why: one EdgeController is one Python process, about one core, about 3,500 nodes (/work/notes/final5.md, the
capacity model); active/standby (``--leader-elect``) adds availability, not capacity. Most of its CPU is per node
(decoding status and Lease heartbeats, PATCHing them, computing what a node must hold), so it divides by node,
the way CloudHub's replicas already divide the links. The informer caches do not divide (below), and that is
accepted: 67-100 KB a node, 7-10 GB per replica at 100,000 nodes.

Membership and assignment are CloudHub's, reused: one coordination.k8s.io Lease per replica in group
``edgecontroller`` (cloud/replicas/leases.py LeaseKeeper: join delay, a replica cut off from the API owns nothing
before the others take its nodes), and rendezvous hashing over the live members (cloud/replicas/assignment.py
NodeAssignment, moved there from CloudHub's replica.py so that both components use it). The nodes are the edge
Nodes from the Node informer plus every node CloudHub has announced a session for (a node that has not registered
yet has no Node). ``owns`` answers for any node name, known or not, from the members alone. The decision itself is
cloud/replicas/shard.py NodeShard, which cloud/nodesync.py asks on every path (not sharded: every node).

1. Up: a node's messages reach its owner. CloudHub reads the same Leases and sends a node's ``resource`` and
   ``meta`` messages to ``topics.from_edge(topics.replica_module("edgecontroller", owner))``
   (cloud/replicas/routes.py, hooked into CloudRouter.up_topic): one decode, by one replica. Every replica also
   subscribes to the shared ``topics.from_edge("edgecontroller")``, where CloudHub sends when it counts no member
   (or cannot read the Leases, or predates shards). Whatever topic a message came on, a replica handles it only if
   it ``owns`` the node; otherwise it drops it unanswered (counted ``not_owned``) and the node's outbox sends it
   again after ``resend_s``, by when the route has moved. So correctness never rests on CloudHub's view.
   Chosen over every replica hearing one inbox (a decode per replica per message: the ``fanout`` story) and over
   a topic per node (a subscription per node, each a replicated JetStream consumer on NATS at QoS 1, minutes per
   handover). Answers to this replica's queries (the store listings of a resync) come back to its own inbox: its
   queries carry ``src`` = its replica module, and CloudHub answers the inbox of the query's ``src``.
2. Down: informers stay full (the API has no "nodes of my shard" selector for ConfigMaps and Secrets, and a field
   selector per node is a watch per node), and the placement indexes every Pod; but only the owner computes a
   node's changes (``Placement.changes``) and queues them at CloudHub, answers its queries and lists its store.
3. Handover (``moves``): a gained node with a live session is resynchronised as on a new session (its store
   listed, what differs sent, what vanished deleted); a gained node whose session is over starts its grace period
   towards Unknown; a lost node's per-node state is dropped (Placement's ``sent`` and ``removed``, its resync
   schedule, its last heartbeat time) and its queued writes not yet started are skipped unanswered. Nothing is
   applied twice: the LeaseKeeper's rules give a moment with no owner, never one with two, and an entry left
   unanswered in the gap is resent by the node's outbox to the new owner. Nothing is lost: the outbox keeps every
   entry until it is answered, and the resync covers what was sent down. (A write already running at the old
   owner may land just after the new owner's first one: a status one heartbeat old, repaired by the next. And
   cluster events queued before a gain may send the node objects it holds before its resync: applied
   idempotently, never a delete, since a lost node's ``sent`` is forgotten.)
4. Only the owner renews a node's Lease (it is the only one handling its heartbeats) and marks a silent node
   Unknown: the session announcements reach every replica (retained, per node; rare), each keeps the session ids
   of all nodes so that a gain can resync at once, but only the owner starts the timer, and the timer's write
   checks ownership again when it runs.
5. Modes (``check_mode``): without ``--replica-id`` EdgeController owns every node and hears the shared topic,
   exactly as today, with or without ``--leader-elect`` (kept: it is the small-fleet HA that runs now, and what
   DeviceController keeps using, whose per-node load is far below a core). With ``--replica-id ID`` it is one of
   N active replicas (N=1 works: it owns every node once its Lease counts). The two together are refused: a
   replica that also waited for a leader Lease would leave its nodes unowned while it waits. DeviceController
   stays active/standby: the same NodeSync-level filter would fit it, but nothing forces it yet.
"""

from __future__ import annotations

from cloud.replicas.shard import NodeShard, ShardMoves
from schemas import topics
from schemas.names import is_object_name

GROUP = "edgecontroller"
"""The replicas' Lease group; also the module whose shared topic every replica hears."""

__all__ = ["GROUP", "EdgeShard", "ShardMoves", "check_mode"]


class EdgeShard(NodeShard):
    """The nodes one EdgeController replica acts for; ``identity`` None: the only EdgeController, every node."""

    def __init__(self, identity: str | None = None) -> None:
        super().__init__(GROUP, identity)


def check_mode(*, replica_id: str, leader_elect: str) -> None:
    """Refuse, naming the setting, what cannot run: a replica identity that does not name a topic and a Lease,
    or ``replica_id`` together with ``leader_elect`` (sharded replicas are all active; a replica waiting for a
    leader Lease would leave its nodes unowned meanwhile). Either alone, or neither, is fine."""
    if not replica_id:
        return
    if leader_elect:
        raise ValueError(f"replica_id {replica_id!r} and leader_elect {leader_elect!r} exclude each other: sharded "
                         "replicas are all active (use one or the other)")
    try:
        topics.replica_module(GROUP, replica_id)
    except ValueError:
        raise ValueError(f"replica_id {replica_id!r} must be a-z, 0-9 and '-', starting with a letter, at most "
                         f"{63 - len(GROUP) - 1} characters (it names a topic and a Lease)") from None
    if not is_object_name(f"{GROUP}-{replica_id}"):
        raise ValueError(f"replica_id {replica_id!r} does not make a Lease name")
