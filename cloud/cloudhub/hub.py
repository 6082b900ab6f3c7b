"""CloudHub: the cloud end of every node's link.

- Sessions: a node is connected while anything (keepalives at least) arrives from
  it; after ``keepalive_timeout_s`` of silence it is disconnected. Each change is a
  retained envelope on ``edgehive/cloud/nodes/<node>/session``, with a session id
  that is new for every session, so a controller knows when to resynchronise.
- Downstream: cloud modules hand CloudHub objects for a node; one keyed queue per
  node (queue.py) sends them while the node is connected and resends until the
  edge acknowledges. Replies and queries go straight through.
- Upstream: what a node sends must be about that node; it is routed by group to
  the controller that owns it, which answers (after its API write) through here.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cloud.cloudhub.queue import NodeQueue
from runtime.bus import Bus
from runtime.component import ComponentSettings
from schemas import kinds, topics
from schemas.envelope import Envelope, Group, Op, Salvage, Send

log = logging.getLogger(__name__)

MODULE = "cloudhub"
ROUTES = {
    Group.RESOURCE: "edgecontroller",
    Group.META: "edgecontroller",
    Group.TWIN: "devicecontroller",
    Group.BUS: "devicecontroller",
    Group.USER: "devicecontroller",
}
DIRECT_OPS = frozenset({Op.RESPONSE, Op.ERROR, Op.QUERY, Op.KEEPALIVE})
QUERY_MEMORY_S = 120.0


@dataclass(frozen=True)
class CloudHubSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    keepalive_timeout_s: float = field(default=40.0, metadata={"help": "silence after which a node is gone"})
    window_per_node: int = field(default=100, metadata={"help": "unacknowledged objects in flight per node"})


@dataclass
class Session:
    id: str
    last_seen: float
    connected: bool = True
    outbox: int | None = None  # what the node's EdgeHub still holds, from its last keepalive
    since: float = field(default_factory=time.time)  # wall clock of the last change, for people


class CloudHub:
    def __init__(self, settings: CloudHubSettings) -> None:
        self.settings = settings
        self.bus: Bus | None = None
        self._lock = threading.Lock()
        self._queues: dict[str, NodeQueue] = {}
        self._sessions: dict[str, Session] = {}
        self._queries: dict[str, tuple[str, float]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send_loop, name="sender", daemon=True),
                         threading.Thread(target=self._session_loop, name="sessions", daemon=True)]

    def attach(self, bus: Bus) -> None:
        self.bus = bus
        bus.handle(topics.all_links(topics.Direction.UP), self.on_up)
        bus.handle(bus.inbox, self.on_module)
        bus.on_session_lost(self.announce_all)
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    @staticmethod
    def error_route(topic: str, found: Salvage) -> str | None:
        """Bad bytes on a node's up topic are answered on that node's down topic."""
        parsed = topics.parse_link(topic)
        if parsed is not None:
            return topics.link_down(parsed[0])
        try:
            return topics.inbox(topics.Side.CLOUD, found.src)
        except ValueError:
            return None

    # -- from the edge ---------------------------------------------------------------

    def on_up(self, envelope: Envelope, topic: str) -> Iterable[Send] | None:
        assert self.bus is not None
        parsed = topics.parse_link(topic)
        if parsed is None:  # edgehive/link/<not a node name>/up: no node can have sent it, no one to answer
            self.bus.counters.inc("bad_link_topic")
            log.warning("dropped %s on %.200s: not a node's link topic", envelope.id, topic)
            return None
        node = parsed[0]
        if envelope.node != node or not _own_resource(envelope, node):
            self.bus.counters.inc("wrong_node")
            log.warning("node %s sent %s about node %s (%s): refused", node, envelope.id, envelope.node,
                        envelope.res or "-")
            return [Send(topics.link_down(node), _as_node(envelope.error(
                MODULE, 403, f"a node may only speak for itself: this link is {node}'s"), node))]
        if envelope.group == Group.HUB and envelope.op == Op.DISCONNECTED:
            body = envelope.body if isinstance(envelope.body, dict) else {}  # any shape may arrive
            self._gone(node, str(body.get("reason", "link lost")))  # the bridge's will
            return None
        self._seen(node)
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            with self._lock:
                queue = self._queues.get(node)
                done = queue.ack(envelope.parent) if queue is not None else None
                asked = self._queries.pop(envelope.parent, None)
            if done is not None:
                self.bus.counters.inc("downstream_acked")
                if envelope.op == Op.ERROR:
                    log.warning("node %s refused %s %s: %s", node, done.op.value, done.res, envelope.body)
                self._wake.set()
                return None
            if asked is not None:
                return [Send(topics.inbox(topics.Side.CLOUD, asked[0]), envelope)]
            return None
        if envelope.op == Op.KEEPALIVE:
            if isinstance(envelope.body, dict) and isinstance(envelope.body.get("outbox"), int):
                with self._lock:
                    self._sessions[node].outbox = envelope.body["outbox"]
            return None
        module = ROUTES.get(envelope.group)
        if module is None:
            self.bus.counters.inc("refused")
            return [Send(topics.link_down(node), envelope.error(MODULE, 400, f"no cloud module takes group "
                                                                             f"{envelope.group.value}"))]
        self.bus.counters.inc("upstream_routed")
        return [Send(topics.from_edge(module), envelope)]

    # -- from the cloud modules ------------------------------------------------------

    def on_module(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        assert self.bus is not None
        if envelope.group == Group.HUB and envelope.op == Op.QUERY and envelope.res is None:
            return None  # a status query for CloudHub itself, answered by the runtime
        node = envelope.node
        if envelope.op in DIRECT_OPS:
            if envelope.op == Op.QUERY:
                with self._lock:
                    self._queries[envelope.id] = (envelope.src, time.monotonic())
                    self._forget_old_queries()
            return [Send(topics.link_down(node), envelope)]
        if envelope.res is None:
            self.bus.counters.inc("refused")
            return [Send(topics.inbox(topics.Side.CLOUD, envelope.src),
                         envelope.error(MODULE, 400, "objects for a node need a resource key"))]
        with self._lock:
            queue = self._queues.setdefault(node, NodeQueue(self.settings.window_per_node))
            if queue.put(envelope):
                self.bus.counters.inc("downstream_queued")
        self._wake.set()
        return None

    def _forget_old_queries(self) -> None:
        if len(self._queries) > 1000:
            now = time.monotonic()
            for qid, (_, when) in list(self._queries.items()):
                if now - when > QUERY_MEMORY_S:
                    del self._queries[qid]

    # -- sending ----------------------------------------------------------------------

    def _send_loop(self) -> None:
        assert self.bus is not None
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:  # most queues are empty: skip them before anything else (1,000 nodes: 3-5 ms a pass)
                work = [(node, q, q.due(now)) for node, q in self._queues.items()
                        if len(q) and (session := self._sessions.get(node)) is not None and session.connected]
            for node, queue, envelopes in work:
                for envelope in envelopes:
                    try:
                        self.bus.publish(topics.link_down(node), envelope, timeout=10)
                    except Exception:
                        log.warning("could not hand %s for %s to the broker", envelope.id, node, exc_info=True)
                        break
                    with self._lock:
                        queue.mark_sent(envelope, time.monotonic())
                    self.bus.counters.inc("downstream_sent")

    # -- sessions ---------------------------------------------------------------------

    def _seen(self, node: str) -> None:
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(node)
            if session is not None and session.connected:
                session.last_seen = now
                return
            session = Session(uuid.uuid4().hex[:12], now)
            self._sessions[node] = session
            queue = self._queues.get(node)
            if queue is not None:
                queue.reset_sent()
        log.info("node %s connected (session %s)", node, session.id)
        self._announce(node, session)
        self._wake.set()

    def _announce(self, node: str, session: Session) -> None:
        assert self.bus is not None
        body = {"session": session.id, "state": "connected" if session.connected else "disconnected"}
        envelope = Envelope(node=node, src=MODULE, group=Group.HUB,
                            op=Op.CONNECTED if session.connected else Op.DISCONNECTED, body=body)
        bus = self.bus
        bus.call_soon(lambda: bus.publish(topics.node_session(node), envelope, retain=True))

    def announce_all(self) -> None:
        """The cloud broker lost its store: the retained session announcements went with it, and a controller
        that missed one would never resynchronise that node. Announce every session again (same ids: a
        controller that saw one does nothing)."""
        with self._lock:
            sessions = list(self._sessions.items())
        for node, session in sessions:
            self._announce(node, session)
        log.info("announced %d node sessions again", len(sessions))

    def _gone(self, node: str, reason: str) -> None:
        with self._lock:
            session = self._sessions.get(node)
            if session is None or not session.connected:
                return
            session.connected = False
            session.since = time.time()
        log.info("node %s disconnected: %s", node, reason)
        self._announce(node, session)

    def _session_loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            gone = []
            with self._lock:
                for node, session in self._sessions.items():
                    if session.connected and now - session.last_seen > self.settings.keepalive_timeout_s:
                        session.connected = False
                        gone.append((node, session))
            for node, session in gone:
                session.since = time.time()
                log.info("node %s disconnected: nothing heard for %.0f s", node, self.settings.keepalive_timeout_s)
                self._announce(node, session)

    def report(self) -> dict[str, Any]:
        """Every node's link, for hub/query answers (edgehive status)."""
        now = time.monotonic()
        with self._lock:
            names = sorted(set(self._sessions) | set(self._queues))
            nodes = {}
            for node in names:
                session, queue = self._sessions.get(node), self._queues.get(node)
                nodes[node] = {
                    "connected": bool(session and session.connected),
                    "session": session.id if session else None,
                    "last_seen_s": round(now - session.last_seen, 1) if session else None,
                    "since": round(session.since) if session else None,
                    "outbox": session.outbox if session else None,
                    "queued": len(queue) if queue else 0,
                    "inflight": queue.inflight if queue else 0,
                }
        return {"nodes": nodes, "keepalive_timeout_s": self.settings.keepalive_timeout_s}

    def queue_depths(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {node: {"queued": len(q), "inflight": q.inflight} for node, q in self._queues.items()}


NODE_SCOPED = frozenset({kinds.NODE, kinds.NODESTATUS, kinds.LEASE})
"""Kinds named after the node they describe: a node may send only its own."""


def _own_resource(envelope: Envelope, node: str) -> bool:
    """A node's Node, NodeStatus and Lease carry its own name; one naming another node is refused here, at the
    door, so that no controller has to be trusted to check."""
    if envelope.op in (Op.RESPONSE, Op.ERROR):
        return True  # an acknowledgement names what the cloud sent this node; it is matched by its parent id
    return envelope.res is None or envelope.res.kind not in NODE_SCOPED or envelope.res.name == node


def _as_node(envelope: Envelope, node: str) -> Envelope:
    """An error to a node must carry that node's name, whatever the refused message claimed."""
    return Envelope(node=node, src=envelope.src, group=envelope.group, op=envelope.op, res=envelope.res,
                    body=envelope.body, rv=envelope.rv, parent=envelope.parent)
