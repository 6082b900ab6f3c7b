"""What EdgeController and DeviceController share: keeping each edge node's share of the cluster in sync.

Informers feed a placement (which node holds which objects); each change becomes
objects queued at CloudHub for the nodes concerned. When a node's session starts
(CloudHub announces a new session id), the node's store is listed for the kinds
this controller owns (keys and versions only) and only the differences are sent.
Subclasses handle what nodes send up (``on_edge``).

What the reconcile thread finds queued at once is reconciled together, and the changes for one node go to
CloudHub in batches (schemas/batch.py) when the CloudHub holding the node's session said it takes them (its
session announcement's ``batch_bytes``); otherwise, and to a CloudHub of the previous version, one message
per object, as before. While changes keep coming, what follows a send within ``BATCH_LINGER_MS`` waits for the
rest of that time and goes with what else comes: under a stream of creates the objects leave in batches rather
than one message each (each message costs every broker it crosses far more than one more member of a batch); a
change after a quiet spell goes at once.

Sharded by node (EdgeController's replicas, cloud/edgecontroller/shard.py): ``shard`` says which nodes this
process acts for; every path that acts for a node asks it. Informers and the placement's indexes stay whole
(every replica places every pod), but only a node's owner computes and sends its changes, resyncs it and reports
it gone; the others only record its sessions, so that a node handed over (``hand_over``) is resynced at once.
Not sharded (the default, and DeviceController), the shard owns every node and nothing changes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from cloud.informer import Informer
from cloud.kube import Kube
from cloud.packed import Packed
from cloud.placement import Change, Placement
from cloud.replicas.shard import NodeShard, ShardMoves
from cloud.resyncschedule import DEFAULT_PERIOD_S, ResyncSchedule
from cloud.sessionnews import read_session_news
from runtime.bus import Bus, RequestError, RequestTimeout
from runtime.linger import Linger
from runtime.listing import listings
from runtime.qos import check_qos
from schemas import kinds, topics
from schemas.batch import MAX_MEMBERS, MIN_BYTES, pack
from schemas.componentstatus import ComponentStatus
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, Send
from schemas.fields import BodyError
from schemas.kubeobj import meta
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

HUB_MODULE = "cloudhub"
CLOUDHUB = topics.inbox(topics.Side.CLOUD, HUB_MODULE)
"""CloudHub's shared inbox: every replica hears it, the node's owner keeps what is for its node."""
HUB_STATUSES = f"{topics.status(HUB_MODULE)}/+"
"""The CloudHub replicas' retained statuses (each ``up``, or its will's ``down``)."""
RESYNC_WORKERS = 32
RESYNC_PAGE = 500
RESYNC_ATTEMPTS = 4
"""Listings of a node's store tried per resync before it falls back to sending everything again."""
SLOW_RESYNC_S = 3.0
"""A resync whose listing takes longer than this is logged, with where the time went."""
FIRST_LISTING_TIMEOUT_S = 3.0
"""A resync's first listing asks each page once more, with the same id, when no answer has come this long
after asking (``Bus.ask``'s ``resend_after``), and takes whichever answer comes first within ``query_timeout_s``:
a page comes back in well under a second from a healthy node, and the first query is the one most often lost:
sent while a node is changing hands, or right after a broker member's death, when the broker may hold it back
(NATS skips a QoS 1 delivery past a session's max_ack_pending until its ack wait, 30 s: broker/nats.py).
Waiting the full timeout for it made a CloudHub replica's failover take 10 s longer. It is asked again rather
than given up on, as it was at first: at 1,000 nodes a takeover keeps the new owner's handler busy for seconds,
and an answer on its way at 3 s was dropped and the listing started over (4.4-4.6 s for 40 nodes a replica)."""
RETRY_PAUSE_S = 0.5
"""The pause before a resync's second listing, doubled before each later one: a lost first query is answered at
once when asked again (2 s before; it was a seventh of a CloudHub replica's failover in bench scale --broker nats
while NATS's cap held a fifth of the first queries back). The later pauses (1 s, 2 s) and the later attempts'
full timeout still give a restarted broker tens of seconds."""
CLOSE_TIMEOUT_S = 5.0
"""``close`` waits this long at most, in all, for the reconcile and periodic threads and the resyncs under way."""
BATCH_MEMBERS = 100
"""The most objects for one node in one message to CloudHub, as CloudHub's own default down the link."""
BATCH_LINGER_MS = 50
"""After a send, the next one waits until this long after it, gathering what comes meanwhile (see the module's
docstring): at most 20 messages a second to CloudHub while busy, and at most 50 ms added to a change. In
``edgehive bench cloud`` (amqtt) it took the messages from EdgeController to CloudHub for 1,000 ConfigMaps from 915
to 60, and the created-to-committed rate from 153 to 328 a second. The controllers' ``--batch-linger-ms``."""
BATCH_LINGER_HELP = ("milliseconds a send to CloudHub that follows the previous one closely waits, gathering the "
                     "changes that come meanwhile into the same batches (0 to 1000; 0: each reconcile pass sends "
                     "at once)")
ANSWER_QOS_HELP = ("QoS of the answers to the nodes (through CloudHub). 1 (the default): the broker acknowledges "
                   "each. 0 suits NATS, where each QoS 1 publish to a QoS 1 subscriber is stored and acknowledged "
                   "through a replicated JetStream consumer, and where the nodes take their down topic at QoS 0 "
                   "already: an answer lost leaves its entry in the node's outbox, which sends it again "
                   "(EdgeHub's --resend-s), and it is answered again")
DRAIN_MAX = 500
"""The most queued cluster changes and listings reconciled together before what they produced is sent: enough
to fill batches under a burst of creates, few enough that the first of them is not held back for long."""


@dataclass(frozen=True)
class ClusterEvent:
    """An informer saw ``obj`` of ``kind`` change (``event``: ADDED, MODIFIED or DELETED)."""

    kind: str
    event: str
    obj: dict[str, Any]
    packed: Packed


@dataclass(frozen=True)
class NodeHolds:
    """What a node's store holds, listed at the start of its session or periodically: key -> (resourceVersion,
    UID). Empty when the listing failed: the node then gets everything again."""

    node: str
    held: dict[ResourceKey, tuple[str, str | None]]
    periodic: bool = False


@dataclass(frozen=True)
class Handed:
    """Ownership moved (``NodeSync.hand_over``): applied on the reconcile thread, in turn with the rest."""

    moves: ShardMoves


def linger_of(linger_ms: int) -> Linger:
    """The controllers' linger, refused by its setting's name when out of range."""
    try:
        return Linger(linger_ms / 1000)
    except ValueError:
        raise ValueError(f"batch_linger_ms must be 0 to 1000, not {linger_ms}") from None


@dataclass
class Resyncing:
    """A resync of one node's session under way: a second one asked meanwhile joins it (``periodic`` False once
    any joiner is a session's own, so that a failed listing sends the node everything, as a session's does)."""

    periodic: bool


Work = ClusterEvent | NodeHolds | Handed
"""What the reconcile thread takes in turn: the cluster's changes, the nodes' listings and the handovers, one at
a time, so that the placement has a single writer."""


class NodeSync:
    module: str = ""

    def __init__(self, kube: Kube, placement: Placement, secondary: tuple[str, ...], bus: Bus, *,
                 query_timeout_s: float = 10.0, resync_workers: int = RESYNC_WORKERS,
                 retry_pause_s: float = RETRY_PAUSE_S, resync_period_s: float = DEFAULT_PERIOD_S,
                 max_size: int = DEFAULT_MAX_SIZE, batch_members: int = BATCH_MEMBERS,
                 linger_ms: int = BATCH_LINGER_MS, answer_qos: int = 1) -> None:
        self.kube = kube
        self.answer_qos = check_qos("answer_qos", answer_qos)
        """QoS of ``reply``'s answers to the nodes (the controllers' ``--answer-qos``)."""
        self.placement = placement
        self.owned = (placement.primary, *secondary)  # the kinds this controller places on nodes
        self.query_timeout_s = query_timeout_s
        self.retry_pause_s = retry_pause_s
        self.bus = bus
        self.shard = NodeShard(self.module)
        """The nodes this process acts for: every node, unless it is one of several replicas sharing them."""
        self._closing = threading.Event()
        self._events: queue.Queue[Work | None] = queue.Queue()
        self.informers = {kind: Informer(self.kube, kind, self._sink) for kind in (kinds.NODE, *self.owned)}
        self._sessions: dict[str, str] = {}  # node -> current session id (every node's, owned or not)
        self._connected: set[str] = set()
        self._unsynced: set[str] = set()
        """Nodes handed to this replica while their session seemed over (``ShardMoves.watch``), not resynchronised
        since: the next announcement of them connected resyncs them, even under the session they had. What their
        last owner could not deliver is left to the new owner, and only a resync finds it."""
        self._watch_lock = threading.Lock()
        """Between a handover watching a node and an announcement of it connected (two threads): one of them
        resyncs it."""
        self._batch_bytes: dict[str, int] = {}
        """node -> the largest batch the CloudHub holding its session takes (its announcement's ``batch_bytes``)."""
        self._hubs: dict[str, str] = {}
        """node -> the CloudHub replica that announced its session last: what is for the node goes to that
        replica's own inbox (``hub_inbox``)."""
        self._hubs_up: set[str] = set()
        """The CloudHub replicas whose retained status says up; only these are sent to directly."""
        self.max_size = max_size
        """The largest message this controller's bus publishes: a batch stays under it too."""
        if not 1 <= batch_members <= MAX_MEMBERS:
            raise ValueError(f"batch_members must be 1 to {MAX_MEMBERS}, not {batch_members}")
        self.batch_members = batch_members
        self.linger = linger_of(linger_ms)
        # Listing a node's store is three round trips to the node; most of a resync is waiting for them, so many
        # run at once (4 at a time took 137-162 s for 1,000 nodes reconnecting together: edgehive bench scale).
        self._pool = ThreadPoolExecutor(max_workers=resync_workers, thread_name_prefix="resync")
        self._resyncing: dict[tuple[str, str], Resyncing] = {}
        """(node, session) -> its resync under way; under ``_resync_lock`` (the bus's, the reconcile and the
        periodic threads start resyncs, the pool's threads end them)."""
        self._resync_lock = threading.Lock()
        self._resync_runs: set[Future[None]] = set()
        """The resyncs submitted to the pool and not yet done, for ``close`` to wait for; under ``_resync_lock``."""
        self._thread = threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True)
        if resync_period_s < 0:
            raise ValueError(f"resync_period_s must be 0 (no periodic resync) or more, not {resync_period_s}")
        self.schedule = ResyncSchedule(resync_period_s) if resync_period_s > 0 else None
        self._periodic = threading.Thread(target=self._periodic_loop, name="periodic-resync", daemon=True)

    def start(self) -> None:
        self.bus.handle(topics.from_edge(self.module), self.on_edge)  # sharded too: where CloudHub sends unsure
        own = self.shard.topic()
        if own is not None:  # one of several replicas: CloudHub routes its nodes' messages here
            self.bus.handle(own, self.on_edge)
            self.bus.handle(topics.inbox(topics.Side.CLOUD, self.shard.query_src()), self._late_answer)
        self.bus.handle(topics.all_node_sessions(), self.on_session)
        self.bus.handle(HUB_STATUSES, self.on_hub_status)
        self.bus.on_session_lost(self.on_broker_lost)
        self._thread.start()
        if self.schedule is not None:
            self._periodic.start()
        for informer in self.informers.values():
            informer.start()

    def close(self) -> None:
        """Stop, waiting up to ``CLOSE_TIMEOUT_S`` for the threads and the resyncs under way, so that none logs
        after it: a listing gives up after its current attempt once closing (the queued ones are cancelled)."""
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        self._closing.set()
        for informer in self.informers.values():
            informer.stop()
        self._events.put(None)
        self._thread.join(timeout=CLOSE_TIMEOUT_S)
        if self._periodic.is_alive():  # it starts resyncs: ended first
            self._periodic.join(timeout=max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._resync_lock:
            running = list(self._resync_runs)
        wait(running, timeout=max(0.0, deadline - time.monotonic()))
        self.kube.close()

    def on_edge(self, envelope: Envelope, topic: str) -> Iterable[Send] | None:
        raise NotImplementedError

    def _late_answer(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """This replica's own inbox carries the answers to its store listings; one that comes after its request
        gave up reaches this handler instead, and is dropped."""
        log.debug("dropped a late answer %s from %s", envelope.id, envelope.node)
        return None

    def on_disconnected(self, node: str, session: str) -> None:
        """A node's session ended (CloudHub heard nothing for its timeout), or a node whose session had ended was
        handed to this replica. Runs on the bus's handler thread or the reconcile thread: must not block."""

    def on_lost(self, node: str) -> None:
        """``node`` was handed to another replica: forget what a subclass keeps per node. Reconcile thread."""

    def not_owned(self, node: str) -> bool:
        """True, counted, when ``node`` is another replica's: what this one heard for it is dropped unanswered
        (the node's outbox sends it again, by when it reaches the owner)."""
        if self.shard.owns(node):
            return False
        self.bus.counters.inc("not_owned")
        return True

    def hand_over(self, moves: ShardMoves) -> None:
        """Nodes moved to or from this replica (cloud/replicas/shard.py ``moves``); applied in turn on the
        reconcile thread."""
        if moves:
            self._events.put(Handed(moves))

    # -- down: the cluster's changes ---------------------------------------------------------

    def _sink(self, kind: str, event: str, obj: dict[str, Any], packed: Packed) -> None:
        self._events.put(ClusterEvent(kind, event, obj, packed))

    def _reconcile_loop(self) -> None:
        """One item at a time (the placement's single writer), and with it whatever else is queued already (up
        to ``DRAIN_MAX``): their changes go out together, so that a burst packs into batches per node."""
        stop = False
        while not stop and (item := self._events.get()) is not None:
            out: list[Change] = []
            self._reconcile(item, out)
            until = self.linger.until()
            for _ in range(DRAIN_MAX - 1):
                try:
                    wait = until - time.monotonic()
                    more = self._events.get(timeout=wait) if wait > 0 else self._events.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                self._reconcile(more, out)
            if not out:
                continue
            self.linger.sent(time.monotonic())
            try:
                self.send(out)
            except Exception:
                log.exception("could not send %d changes to CloudHub", len(out))

    def _reconcile(self, item: Work, out: list[Change]) -> None:
        """Apply one item to the placement; the changes it makes for the nodes this process owns are added to
        ``out``."""
        try:
            if isinstance(item, ClusterEvent):
                self._on_event(item.kind, item.event, item.obj, item.packed, out)
            elif isinstance(item, Handed):
                if out:  # what was computed while these nodes were ours leaves before they are handed over
                    self.send(out)
                    out.clear()
                self._apply(item.moves)
            elif not self.shard.owns(item.node):  # handed to another replica since its listing was asked
                log.info("node %s: resync dropped, the node is another replica's now", item.node)
            else:
                changes = self.placement.resync(item.node, item.held)
                out += changes
                if not item.periodic:
                    log.info("node %s resynchronised (%s)", item.node, ", ".join(self.owned))
                elif changes:  # something was lost on the way (or is in flight): worth a line
                    self.bus.counters.inc("periodic_resync_changes", len(changes))
                    log.info("node %s resynchronised periodically: %d changes sent (%s)", item.node, len(changes),
                             ", ".join(f"{c.op.value} {c.key} {c.rv}" for c in changes[:5]))
                else:
                    log.debug("node %s resynchronised periodically: nothing to send", item.node)
        except Exception:
            what = (f"{item.event} {item.kind}" if isinstance(item, ClusterEvent) else
                    "a handover" if isinstance(item, Handed) else f"resync of {item.node}")
            log.exception("reconcile step failed on %s", what)

    def _apply(self, moves: ShardMoves) -> None:
        """A handover: lost nodes forgotten first; gained live ones resynchronised as on a new session; gained
        silent ones start towards Unknown here."""
        for node in moves.forget:
            self._unsynced.discard(node)
            self.placement.forget(node)
            self.on_lost(node)
        now = time.monotonic()
        for node in moves.resync:
            session = self._sessions.get(node)
            if session is not None and node in self._connected:
                if self.schedule is not None:
                    self.schedule.resynced(node, now)
                self.start_resync(node, session)
        for node in moves.watch:
            with self._watch_lock:
                session = self._sessions.get(node)
                live = node in self._connected  # announced connected since the handover was worked out
                if not live:
                    self._unsynced.add(node)
            if session is None:
                continue  # never announced: its first session resyncs it
            if live:
                self.start_resync(node, session)
            else:
                self.on_disconnected(node, session)
        log.info("handover: %d nodes gained (%d to resync), %d lost", len(moves.resync) + len(moves.watch),
                 len(moves.resync), len(moves.forget))

    def _mine(self, nodes: Iterable[str]) -> list[str]:
        return [node for node in nodes if self.shard.owns(node)]

    def _on_event(self, kind: str, event: str, obj: dict[str, Any], packed: Packed, out: list[Change]) -> None:
        if kind == kinds.NODE:
            for node in self._mine(self.placement.on_node(event, obj)):
                out += self.placement.changes(node)
        elif kind == self.placement.primary:
            for node in self._mine(self.placement.on_primary(event, obj, packed)):
                out += self.placement.changes(node)
        else:
            found = meta(obj)
            key = ResourceKey(found.namespace, kind, str(found.name))
            nodes = self.placement.on_secondary(kind, event, obj, packed)
            if event == "DELETED":  # nodes that held it see it as no longer wanted; those it left, its deletion
                nodes |= {n for n in self.placement.edge_nodes
                          if key in self.placement.sent.get(n, {}) or key in self.placement.removed.get(n, {})}
            for node in self._mine(nodes):
                out += self.placement.changes(node, key)

    def send(self, changes: list[Change]) -> None:
        """Queue ``changes`` at CloudHub, each node's in their order: in batches for a node whose CloudHub takes
        them, else one message each."""
        by_node: dict[str, list[Envelope]] = {}
        for change in changes:
            by_node.setdefault(change.node, []).append(Envelope(
                node=change.node, src=self.module, group=Group.RESOURCE, op=change.op, res=change.key, rv=change.rv,
                body=change.body))
        for node, envelopes in by_node.items():
            budget = min(self._batch_bytes.get(node, 0), self.max_size)
            items: list[tuple[Envelope, tuple[Envelope, ...]]]
            if len(envelopes) < 2 or budget < MIN_BYTES or self.batch_members < 2:
                items = [(envelope, (envelope,)) for envelope in envelopes]
            else:
                items = [(p.envelope, p.members) for p in pack(node, self.module, envelopes,
                                                               max_members=self.batch_members, max_bytes=budget)]
            for carrier, members in items:
                self.bus.publish(self.hub_inbox(node), carrier, timeout=30)
                if carrier.op == Op.BATCH:
                    self.bus.counters.inc("cloudhub_batches")
                for member in members:
                    self.bus.counters.inc("downstream_" + member.op.value)
                    log.debug("queued %s %s for %s", member.op.value, member.res, node)

    def reply(self, envelope: Envelope) -> Send:
        """Answers to a node go through CloudHub, straight down its link; refusals are counted (``refused``)."""
        if envelope.op == Op.ERROR:
            self.bus.counters.inc("refused")
        return Send(self.hub_inbox(envelope.node), envelope, self.answer_qos)

    def hub_inbox(self, node: str) -> str:
        """Where what is for ``node`` goes: the own inbox of the CloudHub replica that announced its session, if
        that replica's status says up; else the shared inbox (a lone CloudHub, a CloudHub of the previous
        version, a node not announced yet, a replica dead or not heard of).

        Why: on the shared inbox every replica decodes every message and all but the owner drop it (at N
        replicas, N decodes for one delivery). Why nothing is lost when this view is stale: a replica that gets
        a message for a node it does not own passes it on to the shared inbox (cloud/cloudhub/routing.py
        ``from_module``); a dead replica hears nothing, so its will (status down) turns the route back to the
        shared inbox at once, and what was sent to it before that precedes the new owner's session, whose
        resync lists the node and sends what it lacks. An announcement naming a dead replica (a NATS member's
        late copy of an old retained one) is thus never trusted blindly."""
        replica = self._hubs.get(node)
        if replica is None or replica not in self._hubs_up:
            return CLOUDHUB
        return topics.inbox(topics.Side.CLOUD, topics.replica_module(HUB_MODULE, replica))

    def on_hub_status(self, envelope: Envelope, topic: str) -> Iterable[Send] | None:
        """A CloudHub replica's retained status: up, or down (its will when it died or lost the broker)."""
        parsed = topics.parse_status(topic)
        if parsed is None or parsed[0] != HUB_MODULE or parsed[1] is None:
            return None
        replica = parsed[1]
        try:
            status = ComponentStatus.parse(envelope.body)
        except BodyError as exc:
            self.bus.counters.inc("refused")
            log.warning("refused status %s of CloudHub replica %s: %s", envelope.id, replica, exc)
            return None
        if status.up and status.replica == replica:
            self._hubs_up.add(replica)
        else:
            self._hubs_up.discard(replica)
        return None

    # -- sessions ------------------------------------------------------------------------------

    def on_session(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """CloudHub's retained announcement of a node's session (its only publisher: no one to answer)."""
        news = read_session_news(envelope, self.bus.counters)
        if news is None:
            return None
        node, session = envelope.node, news.session
        if news.replica is None:
            self._hubs.pop(node, None)
        else:
            try:
                topics.replica_module(HUB_MODULE, news.replica)
            except ValueError:  # names no inbox: the shared one serves
                self._hubs.pop(node, None)
            else:
                self._hubs[node] = news.replica
        if news.batch_bytes is None:
            self._batch_bytes.pop(node, None)
        else:
            self._batch_bytes[node] = news.batch_bytes
        if news.connected:
            with self._watch_lock:
                self._connected.add(node)
                unsynced = node in self._unsynced
                self._unsynced.discard(node)
            if self._sessions.get(node) != session or unsynced:
                self._sessions[node] = session
                if self.shard.owns(node):  # another replica's node: recorded, for a handover to resync at once
                    if self.schedule is not None:
                        self.schedule.resynced(node, time.monotonic())
                    self.start_resync(node, session)
        else:
            self._connected.discard(node)
            if self.shard.owns(node):
                self.on_disconnected(node, session)
        return None

    def on_broker_lost(self) -> None:
        """The cloud broker lost this controller's session (restarted without its store): what it had taken
        from us for CloudHub and not yet delivered is gone, a pod's delete as much as a ConfigMap's update, and
        what we published before CloudHub subscribed again went nowhere. Nothing here sends those again, and
        the nodes' sessions at CloudHub may well outlive the restart (no new session, no resync): so every
        connected node is resynchronised now, by listing its store. Runs on the bus's handler thread."""
        nodes = sorted(self._mine(self._connected.copy()))
        log.warning("the cloud broker lost this controller's session: resynchronising %d connected nodes",
                    len(nodes))
        for node in nodes:
            session = self._sessions.get(node)
            if session is not None:  # what was lost may postdate a listing under way: list again
                self.start_resync(node, session, join=False)

    def sessions_known(self) -> dict[str, str]:
        """A copy of every node's announced session id (owned or not): what a handover resyncs with."""
        return dict(self._sessions)

    def connected_now(self) -> set[str]:
        """A copy of the nodes whose last announcement said connected."""
        return set(self._connected)

    def is_connected(self, node: str) -> bool:
        """CloudHub's last word on the node's session was that it is connected."""
        return node in self._connected

    def still_gone(self, node: str, session: str) -> bool:
        return node not in self._connected and self._sessions.get(node) == session

    def _periodic_loop(self) -> None:
        """Resynchronise each connected node once per ``resync_period_s`` (cloud/resyncschedule.py says why),
        looking for due nodes every second, or more often for a short period."""
        assert self.schedule is not None
        tick = min(1.0, self.schedule.period_s / 10)
        while not self._closing.wait(tick):
            for node in self.schedule.due(time.monotonic(), self._mine(self._connected.copy())):
                session = self._sessions.get(node)
                if session is not None and not self._closing.is_set():
                    self.bus.counters.inc("periodic_resyncs")
                    self.start_resync(node, session, periodic=True)

    def start_resync(self, node: str, session: str, *, periodic: bool = False, join: bool = True) -> bool:
        """Resynchronise ``node`` for ``session`` on the pool, unless a resync of the same node and session is
        under way and ``join``: then that one serves for both (False, counted ``resyncs_joined``). A replica that
        gains a node just as its new session is announced is asked twice, by the handover and by the
        announcement, within milliseconds, and listed the node's store two or three times for one answer.
        ``join`` False (the broker lost what was in flight): a listing taken before the loss would miss it."""
        key = (node, session)
        with self._resync_lock:
            running = self._resyncing.get(key)
            if running is not None and join:
                running.periodic = running.periodic and periodic
                self.bus.counters.inc("resyncs_joined")
                return False
            mine = Resyncing(periodic)
            self._resyncing[key] = mine
            run = self._pool.submit(self._resync, node, session, mine)  # under the lock: ``close`` sees it
            self._resync_runs.add(run)
        run.add_done_callback(self._resync_done)
        return True

    def _resync_done(self, run: Future[None]) -> None:
        with self._resync_lock:
            self._resync_runs.discard(run)

    def _resync(self, node: str, session: str, running: Resyncing) -> None:
        try:
            self._resync_now(node, session, running)
        finally:
            with self._resync_lock:
                if self._resyncing.get((node, session)) is running:
                    del self._resyncing[(node, session)]

    def _resync_now(self, node: str, session: str, running: Resyncing) -> None:
        started = time.monotonic()
        for informer in self.informers.values():
            if not informer.synced.wait(60):
                log.warning("informers not synced after 60 s; resync of %s proceeds", node)
                break
        listing = time.monotonic()
        held = self._list_store(node, session)
        done = time.monotonic()
        if done - started > SLOW_RESYNC_S:  # a takeover's straggler: which part of the resync held it up
            log.warning("the listing of node %s for its resync took %.1f s (%.1f s waiting for the informers, "
                        "%.1f s listing)", node, done - started, listing - started, done - listing)
        with self._resync_lock:  # no one joins after this: a later ask starts a listing of its own
            if self._resyncing.get((node, session)) is running:
                del self._resyncing[(node, session)]
            periodic = running.periodic
        if held is None:
            if periodic:  # not worth sending the node everything again: the next one, or its next session, lists
                return
            held = {}
        if self._sessions.get(node) == session and self.shard.owns(node):
            self._events.put(NodeHolds(node, held, periodic))

    def _list_store(self, node: str, session: str) -> dict[ResourceKey, tuple[str, str | None]] | None:
        """What ``node``'s store holds; None when it could not be listed (a session's resync then sends the node
        everything again, and deletes nothing). A listing is tried again while the session lasts: right after a broker
        restart the query or its answer is easily lost (CloudHub or the node's bridge not subscribed again
        yet), and without a listing nothing the node holds that the cloud no longer has can be found."""
        pause = self.retry_pause_s
        for attempt in range(1, RESYNC_ATTEMPTS + 1):
            held: dict[ResourceKey, tuple[str, str | None]] = {}
            resend = FIRST_LISTING_TIMEOUT_S if attempt == 1 and self.query_timeout_s > FIRST_LISTING_TIMEOUT_S \
                else None
            hub = self.hub_inbox(node)  # looked up again for each attempt: the node may have changed hands
            try:
                for item in listings(self.bus, hub, self.owned, limit=RESYNC_PAGE, timeout=self.query_timeout_s,
                                     node=node, src=self.shard.query_src() if self.shard.sharded else None,
                                     resend_after=resend):
                    held[item.key] = (item.rv, item.uid)
                return held
            except (RequestTimeout, RequestError, BodyError) as exc:
                log.warning("could not list what node %s holds (attempt %d of %d: %s)", node, attempt,
                            RESYNC_ATTEMPTS, exc)
            if self._sessions.get(node) != session or self._closing.is_set():
                return None  # a newer session's resync takes over (this one's result is dropped), or we stop
            if attempt < RESYNC_ATTEMPTS:
                self._closing.wait(pause)
                pause *= 2
        log.warning("could not list what node %s holds", node)
        return None
