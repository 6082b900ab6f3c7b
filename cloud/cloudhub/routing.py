"""CloudHub's decisions: envelopes and the time in, what to publish out. No threads, no bus, no clock.

The state is every node's session, every node's downstream queue (queue.py) and the queries
passed down (runtime/queries.py). hub.py runs it: its handlers and its sender and session
threads call in under one lock, with ``now`` from the monotonic clock, and publish what
comes back.

- Up: what a node sends must be about that node (its link topic names it); answers settle
  its queue or go back to the module that asked; keepalives keep its session; the rest is
  routed by group to the controller that owns it.
- Down: objects for a node go into its queue, sent while it is connected and resent until
  acknowledged; answers, queries and keepalives go straight down.
- Sessions: a node is connected from the first thing heard until its bridge's will or
  ``keepalive_timeout_s`` of silence. The will is the Python bridge's envelope on the up
  topic (``from_node``) or a native (mosquitto) bridge's ``0`` on the node's hello topic
  (``link_lost``). Each change is announced (retained) with an id that is
  new for every session, so that a controller knows when to resynchronise the node, and
  announced once more ``REPEAT_AFTER_S`` later (see ``expire``). The first announcement goes at
  QoS 0, the repeat at QoS 1 (see ``announcement``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cloud.cloudhub.queue import NodeQueue
from runtime.counters import Counters
from runtime.queries import DIRECT_OPS, QueryMemory
from schemas import kinds, topics
from schemas.batch import MIN_BYTES, Batch, Packed, pack
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, EnvelopeError, Group, Op, Salvage, Send
from schemas.fields import BodyError
from schemas.link import Keepalive, KeepaliveAnswer, LinkChange, SessionNews

if TYPE_CHECKING:  # a lone CloudHub does not load the Lease code (nor, through it, the Kubernetes client)
    from cloud.replicas.routes import ReplicaRoutes

log = logging.getLogger(__name__)

MODULE = "cloudhub"
ROUTES = {
    Group.RESOURCE: "edgecontroller",
    Group.META: "edgecontroller",
    Group.TWIN: "devicecontroller",
    Group.BUS: "devicecontroller",
    Group.USER: "router",
}
NODE_SCOPED = frozenset({kinds.NODE, kinds.NODESTATUS, kinds.LEASE})
"""Kinds named after the node they describe: a node may send only its own."""


REPEAT_AFTER_S = 10.0
"""How long after a session change its announcement is published once more. A NATS cluster shares retained
messages among its members asynchronously: a controller that subscribes on one member just as the announcement
is published on another can get it neither live nor as retained, and would never resynchronise the node. The
repeat reaches every controller subscribed by then; those that had it already see the same session id and
do nothing."""


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Session:
    id: str
    last_seen: float
    changed: float
    """When it last connected or disconnected (monotonic), shown to people as a wall-clock ``since``."""
    connected: bool = True
    outbox: int | None = None
    """What the node's EdgeHub still holds, from its last keepalive."""
    repeated: bool = False
    """Whether the announcement of the last change went out a second time (``REPEAT_AFTER_S``)."""
    batch_bytes: int | None = None
    """The largest batch the node takes, from its keepalives; None: a node that takes no batches (the previous
    version), sent one envelope per message."""

    def news(self, replica: str | None = None, batch_bytes: int | None = None) -> SessionNews:
        return SessionNews(self.id, self.connected, replica, batch_bytes)


@dataclass(frozen=True)
class Due:
    """What one node's queue has to send now, and how it may be packed."""

    node: str
    envelopes: list[Envelope]
    max_members: int
    max_bytes: int
    """The batch budget: the smaller of CloudHub's and the node's; 0 when the node takes no batches."""

    def packed(self) -> list[Packed]:
        """The messages to publish, in queue order: batches of what is due (schemas/batch.py), or one per
        envelope (``payload`` empty: the bus encodes it) for a node that takes no batches. Pure work (encoding)
        on no shared state, so the hub runs it outside its lock."""
        if self.max_bytes < MIN_BYTES or self.max_members == 1:  # also a node whose limit leaves no room
            return [Packed(envelope, b"", (envelope,)) for envelope in self.envelopes]
        return pack(self.node, MODULE, self.envelopes, max_members=self.max_members, max_bytes=self.max_bytes)


@dataclass
class Routed:
    """What one decision asks the hub to do."""

    sends: list[Send] = field(default_factory=list)
    """To publish now, as a handler's answer."""
    announce: list[Send] = field(default_factory=list)
    """Session announcements: published retained, in the order decided."""
    wake: bool = False
    """The sender has new work: a queue grew, a node connected, an entry was acknowledged."""


class CloudRouter:
    def __init__(self, counters: Counters, *, window_per_node: int, keepalive_timeout_s: float,
                 session_id: Callable[[], str] = new_session_id, replica: str | None = None,
                 batch_max_members: int = 1, batch_max_bytes: int = 0, max_size: int = DEFAULT_MAX_SIZE,
                 forward_qos: int = 1) -> None:
        self.counters = counters
        self.forward_qos = forward_qos
        """QoS of what a node sent, passed on to a cloud module (a controller, or a query's asker): CloudHub's
        ``--forward-qos``."""
        self.max_size = max_size
        """The largest envelope accepted: each member of a batch from a node is checked against it."""
        self.batch_max_members = batch_max_members
        self.batch_max_bytes = batch_max_bytes
        """CloudHub's own batch limits (1 member or 0 bytes: no batches); a node's keepalive may lower the bytes."""
        self.replica = replica
        """This replica's identity, named in its session announcements; None for the only CloudHub."""
        self.window_per_node = window_per_node
        self.keepalive_timeout_s = keepalive_timeout_s
        self._session_id = session_id
        self.queues: dict[str, NodeQueue] = {}
        self.sessions: dict[str, Session] = {}
        self.queries = QueryMemory()
        self.owned: set[str] | None = None
        """The nodes this replica serves (replica.py); None: every node, as the fleet's only CloudHub."""
        self.pending: set[str] = set()
        self.gone_elsewhere: set[str] = set()
        """Nodes whose last session announcement by another replica said disconnected (``heard_news``): taken
        over, they are announced only once they are heard, not at once (``take``)."""
        self.announced: set[str] = set()
        """Nodes any CloudHub ever announced a session for (this replica's earlier life and a lone CloudHub's
        included): a node not among them never had a session to take over (``take``)."""
        """Nodes moved to this replica whose up topic the broker has not yet confirmed subscribing us to."""
        self.up_routes: dict[str, ReplicaRoutes] = {}
        """Controllers sharded by node (EdgeController's replicas, cloud/replicas/routes.py): what a node sends
        them goes to its owner's topic; any other module's, to the module's one topic."""

    # -- from the edge ---------------------------------------------------------------------

    def from_node(self, envelope: Envelope, topic: str, now: float) -> Routed:
        parsed = topics.parse_link(topic)
        if parsed is None:  # edgehive/link/<not a node name>/up: no node can have sent it, no one to answer
            self.counters.inc("bad_link_topic")
            log.warning("dropped %s on %.200s: not a node's link topic", envelope.id, topic)
            return Routed()
        node = parsed[0]
        if not self.owns(node):  # a message still in flight when the node moved to another replica
            self.counters.inc("not_owned")
            return Routed()
        if envelope.node != node or not own_resource(envelope, node):
            self.counters.inc("wrong_node")
            log.warning("node %s sent %s about node %s (%s): refused", node, envelope.id, envelope.node,
                        envelope.res or "-")
            return Routed([Send(topics.link_down(node), as_node(envelope.error(
                MODULE, 403, f"a node may only speak for itself: this link is {node}'s"), node))])
        if envelope.group == Group.HUB and envelope.op == Op.DISCONNECTED:  # the bridge's will
            try:
                change = LinkChange.parse(envelope.body)
                change.check_op(envelope.op)
            except BodyError as exc:
                return self._refuse(node, envelope, exc)
            return self._gone(node, change.reason or "link lost", now)
        routed = self._seen(node, now)
        if envelope.op == Op.BATCH:
            return self._from_batch(node, envelope, topic, now, routed)
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            queue = self.queues.get(node)
            done = queue.ack(envelope.parent) if queue is not None else None
            if done is not None:
                self.counters.inc("downstream_acked")
                if envelope.op == Op.ERROR:
                    log.warning("node %s refused %s %s: %s", node, done.op.value, done.res, envelope.body)
                routed.wake = True
                return routed
            asker = self.queries.asker(envelope, now)
            if asker is not None:
                routed.sends.append(Send(topics.inbox(topics.Side.CLOUD, asker), envelope, self.forward_qos))
            elif envelope.op == Op.ERROR and envelope.group == Group.HUB:  # a refused batch: its members go again
                self.counters.inc("refused_by_node")
                log.warning("node %s refused %s: %s", node, envelope.parent, envelope.body)
            else:  # an acknowledgement of an entry a newer one replaced, or an answer its asker gave up on
                self.counters.inc("answers_unmatched")
                log.debug("node %s answered %s, which nothing here waits for", node, envelope.parent)
            return routed
        if envelope.op == Op.KEEPALIVE:
            try:
                keepalive = Keepalive.parse(envelope.body)
            except BodyError as exc:
                return self._refuse(node, envelope, exc, routed)
            if keepalive.outbox is not None:
                self.sessions[node].outbox = keepalive.outbox
            self.sessions[node].batch_bytes = keepalive.batch_bytes
            if keepalive.batch_bytes is not None:  # a node that knows batches: whether it may send them up, now
                routed.sends.append(Send(topics.link_down(node), envelope.reply(
                    MODULE, KeepaliveAnswer(self.up_batch_bytes()).as_body())))
            return routed
        module = ROUTES.get(envelope.group)
        if module is None:
            self.counters.inc("refused")
            routed.sends.append(Send(topics.link_down(node), envelope.error(
                MODULE, 400, f"no cloud module takes group {envelope.group.value}")))
            return routed
        self.counters.inc("upstream_routed")
        routed.sends.append(Send(self.up_topic(module, node), envelope, self.forward_qos))
        return routed

    def up_topic(self, module: str, node: str) -> str:
        """Where ``node``'s messages for ``module`` go: a sharded controller's owner replica, else the module."""
        routes = self.up_routes.get(module)
        return topics.from_edge(module) if routes is None else routes.topic(node)

    def _from_batch(self, node: str, envelope: Envelope, topic: str, now: float, routed: Routed) -> Routed:
        """A node's batch (its answers to a batch sent down, or its outbox entries, sent because this hub's answer
        to its keepalive said it takes them): every member is checked before any is taken, then each is routed as
        if it had come alone. A bad one refuses the batch whole: nothing in it settles an
        entry, so what it answered is sent again and answered again."""
        try:
            batch = Batch.parse(envelope)
            members = batch.members(self.max_size)
        except EnvelopeError as exc:
            self.counters.inc("batch_refused")
            self.counters.inc("refused")  # the count every refusal of bad input goes into
            log.warning("refused batch %s from node %s: %s", envelope.id, node, exc)
            routed.sends.append(Send(topics.link_down(node), as_node(envelope.error(MODULE, 400, str(exc)), node)))
            return routed
        self.counters.inc("upstream_batches")
        for member in members:
            one = self.from_node(member, topic, now)
            routed.sends += one.sends
            routed.announce += one.announce
            routed.wake = routed.wake or one.wake
        return routed

    def up_batch_bytes(self) -> int | None:
        """The largest batch taken from a node (said in the answer to its keepalives) or from a controller for a
        node (said in the node's session announcements): the same limit as a batch down (CloudHub's
        ``batch_max_bytes``, at most its ``max_envelope_size``, which every message in is checked against); None,
        no batches anywhere, when batches are turned off."""
        if self.batch_max_members < 2 or self.batch_max_bytes < MIN_BYTES:
            return None
        return min(self.batch_max_bytes, self.max_size)

    def _refuse(self, node: str, envelope: Envelope, exc: BodyError, routed: Routed | None = None) -> Routed:
        routed = Routed() if routed is None else routed
        self.counters.inc("refused")
        log.warning("refused %s %s from node %s: %s", envelope.op.value, envelope.id, node, exc)
        routed.sends.append(Send(topics.link_down(node), envelope.error(MODULE, 400, str(exc))))
        return routed

    # -- from the cloud modules ------------------------------------------------------------

    def from_module(self, envelope: Envelope, now: float, *, forward: bool = False) -> Routed:
        """A controller's message for a node. ``forward``: it came on this replica's own inbox, where a controller
        sends what is for the nodes whose session this replica announced. If the node is not (or no longer) ours,
        the controller's view is the stale one (it has not yet heard the new owner's announcement): the message
        goes on to the shared inbox, which every replica hears and the owner keeps, rather than being dropped,
        which lost an update sent just before ownership moved whenever no later resync listed the node after it.
        On the shared inbox itself what is not ours is dropped (the owner hears it too; with no owner at all, the
        node is between two replicas, and the next one's session starts a resync that sends what it lacks)."""
        if envelope.group == Group.HUB and envelope.op == Op.QUERY and envelope.res is None:
            return Routed()  # a status query for CloudHub itself, answered by the runtime
        if not self.owns(envelope.node):
            if forward:
                self.counters.inc("forwarded")
                return Routed([Send(topics.inbox(topics.Side.CLOUD, MODULE), envelope)])
            self.counters.inc("not_owned")
            return Routed()
        if envelope.op == Op.BATCH:
            return self._from_module_batch(envelope, now)
        if envelope.op in DIRECT_OPS:
            if envelope.op == Op.QUERY:
                self.queries.remember(envelope, now)
            return Routed([Send(topics.link_down(envelope.node), envelope)])
        if envelope.res is None:
            self.counters.inc("refused")
            return Routed([Send(topics.inbox(topics.Side.CLOUD, envelope.src),
                                envelope.error(MODULE, 400, "objects for a node need a resource key"))])
        queue = self.queues.setdefault(envelope.node, NodeQueue(self.window_per_node))
        if queue.put(envelope):
            self.counters.inc("downstream_queued")
        else:  # the queue holds a newer version of the object, which is the one the node needs
            self.counters.inc("downstream_superseded")
        return Routed(wake=True)

    def _from_module_batch(self, envelope: Envelope, now: float) -> Routed:
        """A controller's objects for one node in one message (sent because this hub's session announcement said
        it takes them): every member is checked before any is queued, then each is taken as if it had come alone,
        in order. A bad one refuses the batch whole, answered to the controller with an error naming it."""
        try:
            members = Batch.parse(envelope).members(self.max_size)
        except EnvelopeError as exc:
            self.counters.inc("batch_refused")
            self.counters.inc("refused")
            log.warning("refused batch %s from %s for node %s: %s", envelope.id, envelope.src, envelope.node, exc)
            return Routed([Send(topics.inbox(topics.Side.CLOUD, envelope.src), envelope.error(MODULE, 400, str(exc)))])
        self.counters.inc("module_batches")
        routed = Routed()
        for member in members:
            one = self.from_module(member, now)
            routed.sends += one.sends
            routed.wake = routed.wake or one.wake
        return routed

    # -- sending ---------------------------------------------------------------------------

    def due(self, now: float) -> list[tuple[str, list[Envelope]]]:
        """What each connected node's queue has to send now. Most queues are empty: they are skipped before
        anything else (1,000 nodes: 3-5 ms a pass)."""
        return [(node, queue.due(now)) for node, queue in self.queues.items()
                if len(queue) and (session := self.sessions.get(node)) is not None and session.connected]

    def due_packing(self, now: float) -> list[Due]:
        """``due`` with each node's batch budget: no queue entry is held back to fill a batch (what is due now
        goes now); a batch forms from what queued while the sender was busy with the previous pass."""
        out = []
        for node, envelopes in self.due(now):
            if not envelopes:  # all in flight, none due again yet
                continue
            session = self.sessions[node]
            budget = 0 if session.batch_bytes is None else min(self.batch_max_bytes, session.batch_bytes)
            out.append(Due(node, envelopes, self.batch_max_members, budget))
        return out

    def sent(self, node: str, envelope: Envelope, now: float) -> None:
        """``envelope`` is with the broker, on its way down ``node``'s link."""
        queue = self.queues.get(node)
        if queue is not None:
            queue.mark_sent(envelope, now)
        self.counters.inc("downstream_sent")

    # -- ownership (replicas) ---------------------------------------------------------------

    def owns(self, node: str) -> bool:
        return self.owned is None or node in self.owned

    def gain(self, node: str) -> None:
        """``node`` moved to this replica, and its up topic is being subscribed to: it is taken (``take``) when
        the broker confirms the subscription (``subscribed``), not before. Announced earlier, its new session
        would start the controllers' resync at once, and the node's answers to their listing queries would be
        published before the broker delivers its up topic here: lost, the resync falls back to sending the node
        everything and deleting nothing (NATS takes a while to create a subscription's JetStream consumer)."""
        if self.owned is None:
            self.owned = set()
        self.pending.add(node)

    def subscribed(self, topic_filter: str, now: float) -> Routed:
        """The broker confirmed (SUBACK) a subscription: a pending node's up topic is taken now; anything else
        (a subscription asked again after a reconnect) changes nothing."""
        parsed = topics.parse_link(topic_filter)
        if parsed is None or parsed[1] != topics.Direction.UP or parsed[0] not in self.pending:
            return Routed()
        self.pending.discard(parsed[0])
        return self.take(parsed[0], now)

    def take(self, node: str, now: float) -> Routed:
        """``node`` moved to this replica: a new session, announced, so that the controllers resynchronise it
        (what the old owner had queued is gone with it; the resync sends what the node lacks). Announced as
        connected before it is heard: if it is not, ``expire`` announces it gone after the keepalive timeout,
        which also replaces a dead owner's retained "connected" announcement. Except a node whose last
        announcement, by the replica that had it, said disconnected: announced connected at once, the controllers
        would list the store of a node that is not on the link (each listing waiting out its timeouts) and start
        its grace period again; it stays as it was announced until it is heard (``_seen``), as a node that
        connects for the first time. The same for a node no CloudHub ever announced (a fleet whose replicas start
        before its nodes first connect): there is no live session to take over, and announcing one would have the
        controllers list the stores of every such node until the keepalive timeout."""
        if self.owned is None:
            self.owned = set()
        self.owned.add(node)
        self.sessions.pop(node, None)
        if node in self.gone_elsewhere or node not in self.announced:
            return Routed()
        return self._seen(node, now)

    def heard_news(self, node: str, news: SessionNews) -> None:
        """A session announcement on the broker (every replica hears them all): what another replica said of a
        node is remembered for ``take``; this replica's own are ignored (its sessions say the same), but for
        having been announced at all."""
        self.announced.add(node)
        if news.replica is None or news.replica == self.replica:
            return
        if news.connected:
            self.gone_elsewhere.discard(node)
        else:
            self.gone_elsewhere.add(node)

    def drop(self, node: str) -> None:
        """``node`` moved to another replica: forget it without a word (the new owner announces its own
        session; a "disconnected" from here could land after that and undo it)."""
        if self.owned is not None:
            self.owned.discard(node)
        self.pending.discard(node)
        session = self.sessions.pop(node, None)
        self.queues.pop(node, None)
        log.info("node %s no longer served here (session %s): it moved to another replica", node,
                 session.id if session is not None else "-")

    # -- sessions --------------------------------------------------------------------------

    def _seen(self, node: str, now: float) -> Routed:
        session = self.sessions.get(node)
        if session is not None and session.connected:
            session.last_seen = now
            return Routed()
        session = Session(self._session_id(), now, now)
        self.sessions[node] = session
        queue = self.queues.get(node)
        if queue is not None:
            queue.reset_sent()
        log.info("node %s connected (session %s)", node, session.id)
        return Routed(announce=[announcement(node, session, self.replica, self.up_batch_bytes())], wake=True)

    def _gone(self, node: str, reason: str, now: float) -> Routed:
        session = self.sessions.get(node)
        if session is None or not session.connected:
            return Routed()
        session.connected = False
        session.changed = now
        session.repeated = False
        log.info("node %s disconnected: %s", node, reason)
        return Routed(announce=[announcement(node, session, self.replica, self.up_batch_bytes())])

    def link_lost(self, node: str, now: float) -> Routed:
        """A native bridge's will (``0`` on the node's hello topic, topics.NATIVE_DOWN): the node's link is gone,
        as the Python bridge's will on the up topic says (``from_node``). Only for a node this replica owns; one
        moved elsewhere is its new owner's to announce (a "disconnected" from here could undo that announcement).
        A node with no session, or one already gone, changes nothing: the retained ``0`` every CloudHub reads at
        start-up for a node whose link is down."""
        if not self.owns(node):
            return Routed()
        return self._gone(node, "link lost (bridge's will)", now)

    def expire(self, now: float) -> Routed:
        """Nodes not heard from for ``keepalive_timeout_s`` are disconnected; the last change of a session that
        has lasted ``REPEAT_AFTER_S`` is announced once more, unchanged."""
        routed = Routed()
        for node, session in self.sessions.items():
            if session.connected and now - session.last_seen > self.keepalive_timeout_s:
                routed.announce += self._gone(node, f"nothing heard for {self.keepalive_timeout_s:.0f} s",
                                              now).announce
            elif not session.repeated and now - session.changed >= REPEAT_AFTER_S:
                session.repeated = True
                routed.announce.append(announcement(node, session, self.replica, self.up_batch_bytes(), qos=1))
        return routed

    def announce_all(self) -> Routed:
        """For a broker that lost its store: every session's announcement again, with the same ids (a controller
        that saw one does nothing; one that missed it would never resynchronise that node); and whatever was in
        flight to the nodes goes again at once, since the broker may have dropped it, rather than after a
        resend delay that may have grown to a minute."""
        for queue in self.queues.values():
            queue.reset_sent()
        batch_bytes = self.up_batch_bytes()
        return Routed(announce=[announcement(node, session, self.replica, batch_bytes, qos=1)
                                for node, session in self.sessions.items()],
                      wake=True)

    def report(self, now: float, wall: float) -> dict[str, Any]:
        """Every node's link, for status queries (edgehive status) and metrics; ``wall``: time.time() at ``now``."""
        nodes = {}
        for node in sorted(set(self.sessions) | set(self.queues)):
            session, queue = self.sessions.get(node), self.queues.get(node)
            nodes[node] = {
                "connected": bool(session and session.connected),
                "session": session.id if session else None,
                "last_seen_s": round(now - session.last_seen, 1) if session else None,
                "since": round(wall - (now - session.changed)) if session else None,
                "outbox": session.outbox if session else None,
                "queued": len(queue) if queue else 0,
                "inflight": queue.inflight if queue else 0,
            }
        return {"nodes": nodes, "keepalive_timeout_s": self.keepalive_timeout_s}


def announcement(node: str, session: Session, replica: str | None = None, batch_bytes: int | None = None,
                 qos: int = 0) -> Send:
    """The retained news of ``node``'s session; ``batch_bytes``: the batches this CloudHub takes on its inbox.

    A change is announced at QoS 0 (``qos``), its repeat at QoS 1. On NATS a QoS 1 publish is a JetStream write
    and a delivery through a replicated consumer on top of the retained message's own write, and the member
    takes a connection's publishes one after another: a replica taking over 172 nodes had its announcements
    reach the controllers up to 3.3 s late, and the controllers start each node's resync on it. At QoS 0 the
    retained write is all, and the controllers have it as it is stored. What QoS 0 gives up is covered: one
    published while the connection is down is published at QoS 1 instead (the hub), one lost with a
    connection that dies as it is written goes again at QoS 1 ``REPEAT_AFTER_S`` later, and a controller that
    reconnects subscribes again and gets every retained announcement."""
    news = session.news(replica, batch_bytes)
    return Send(topics.node_session(node), Envelope(node=node, src=MODULE, group=Group.HUB, op=news.op,
                                                    body=news.as_body()), qos)


def error_route(topic: str, found: Salvage) -> str | None:
    """Bad bytes on a node's up topic are answered on that node's down topic."""
    parsed = topics.parse_link(topic)
    if parsed is not None:
        return topics.link_down(parsed[0])
    try:
        return topics.inbox(topics.Side.CLOUD, found.src)
    except ValueError:
        return None


def own_resource(envelope: Envelope, node: str) -> bool:
    """A node's Node, NodeStatus and Lease carry its own name; one naming another node is refused here, at the
    door, instead of relying on every controller to check."""
    if envelope.op in (Op.RESPONSE, Op.ERROR):
        return True  # an acknowledgement names what the cloud sent this node; it is matched by its parent id
    return envelope.res is None or envelope.res.kind not in NODE_SCOPED or envelope.res.name == node


def as_node(envelope: Envelope, node: str) -> Envelope:
    """An error to a node must carry that node's name, whatever the refused message claimed."""
    return replace(envelope, node=node)
