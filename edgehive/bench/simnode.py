"""One simulated edge node of ``bench scale``, as the cloud sees it, minus the I/O.

What the cloud sees of a real node is its bridge: one MQTT connection carrying what EdgeHub, MetaManager and
EdgeD say. A simulated node says exactly that: EdgeHub's hello and keepalives and its outbox, EdgeD's
registration and node status, and MetaManager's answers, from MetaManager's own logic
(edge.metamanager.manager) over an in-memory store instead of SQLite. No containers run: what MetaManager
would forward to EdgeD goes nowhere, and the pods stay Pending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edge.edged.node import node_object, node_status
from edge.edged.nodereport import StatusReporter, heartbeat_body
from edge.metamanager.manager import MetaManager
from edge.metamanager.memorystore import MemoryStore
from schemas import kinds, topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey

NAMESPACE = "scale"
NODE_PREFIX = "sim-"

# What a real node does, from the components' defaults (EdgeD, EdgeHub, the bridge).
STATUS_S = 10.0
"""EdgeD's node_status_s. A simulated node computes its status at every one and sends it as EdgeD does: when it
changed or every node_status_report_s (edge/edged/nodereport.py's StatusReporter), and a Lease heartbeat with
its conditions otherwise; either renews the node's Lease, so the API writes are those of real, idle nodes."""
KEEPALIVE_S = 15.0  # EdgeHub's keepalive_s
RESEND_S = 10.0  # EdgeHub's resend_s
MQTT_KEEPALIVE_S = 10  # the bridge's cloud_keepalive
RECONNECT_MAX_S = 5.0  # the bridge's reconnect_max_s


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index:04d}"


def configmap_key(node: str) -> str:
    """The resource key of a node's ConfigMap, as the node's store spells it."""
    return str(ResourceKey(NAMESPACE, kinds.CONFIGMAP, f"cfg-{node}"))


@dataclass
class Pending:
    """An upstream entry waiting for the cloud's answer, as in EdgeHub's outbox."""

    envelope: Envelope
    payload: bytes
    sent_at: float | None = None


@dataclass(frozen=True)
class Note:
    """What a downstream envelope did to a node, for the bench's books.

    ``what``: got (an object, ``key`` and ``rv``, ``outcome`` applied or stale), listed (a page of ``key``, a kind;
    ``last`` when it was the last page), acked (the cloud answered an outbox entry about kind ``key``), late (an
    answer to an entry no longer waiting: answered before, or replaced by a newer status), refused.
    """

    what: str
    key: str = ""
    rv: str | None = None
    outcome: str = ""
    last: bool = True


class SimNode:
    """EdgeHub: the hello and keepalives, and an outbox whose entries stay until the cloud answers them (status
    entries coalesce: a newer status replaces the older one, sent or not). EdgeD: registration once, then node
    status. MetaManager: what the cloud sends stored and answered, and store listings answered page by page."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.store = MemoryStore()
        self.manager = MetaManager(self.store, name)
        self.outbox: dict[str, Pending] = {}
        self.registered = False
        self.reporter = StatusReporter()

    def keepalive(self) -> Envelope:
        return Envelope(node=self.name, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                        body={"outbox": len(self.outbox)})

    def register(self) -> Envelope:
        """Queue EdgeD's Node registration, unless it was answered or is waiting already."""
        for pending in self.outbox.values():
            if pending.envelope.res is not None and pending.envelope.res.kind == kinds.NODE:
                return pending.envelope
        obj = node_object(self.name, "127.0.0.1", True, "simulated by edgehive bench scale")
        return self._queue(Envelope(node=self.name, src="edged", group=Group.RESOURCE, op=Op.INSERT,
                                    res=ResourceKey(None, kinds.NODE, self.name), body=obj))

    def status(self, now: float | None = None, clock: float | None = None) -> Envelope:
        """Queue what EdgeD sends each node_status_s: its status when the reporter says so, else a Lease heartbeat
        with the conditions; it replaces an older one of its kind still in the outbox, as EdgeHub's coalescing
        does. ``now``: wall-clock time of the status; ``clock``: the monotonic clock for the report period."""
        clock = time.monotonic() if clock is None else clock
        status = self.reporter.computed(node_status("127.0.0.1", True, "simulated by edgehive bench scale",
                                                    now or time.time()))
        body: dict[str, Any]
        if self.reporter.due(status, clock):
            self.reporter.sent(status, clock)
            kind, body = kinds.NODESTATUS, {"status": status}
        else:
            kind, body = kinds.LEASE, heartbeat_body(status)
        for msg_id in [m for m, p in self.outbox.items() if p.envelope.res is not None and p.envelope.res.kind == kind]:
            del self.outbox[msg_id]
        return self._queue(Envelope(node=self.name, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                                    res=ResourceKey(None, kind, self.name), body=body))

    def _queue(self, envelope: Envelope) -> Envelope:
        self.outbox[envelope.id] = Pending(envelope, envelope.encode())
        return envelope

    def due(self, now: float, resend_s: float = RESEND_S) -> list[Pending]:
        """Entries never sent, or unanswered for ``resend_s``; in the order they were queued."""
        return [p for p in self.outbox.values() if p.sent_at is None or now - p.sent_at >= resend_s]

    def link_lost(self) -> None:
        """EdgeHub sends the whole outbox again, in order, when the link returns."""
        for pending in self.outbox.values():
            pending.sent_at = None

    def on_down(self, envelope: Envelope) -> tuple[list[Envelope], Note | None]:
        """The node's answers to one envelope from the cloud, and what it did."""
        if envelope.node != self.name:
            return [], Note("refused", "another node's envelope")  # EdgeHub drops it
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            return [], self._answered(envelope)
        sends = self.manager.on_cloud_batch([envelope])  # as MetaManager's committer applies what arrives
        replies = [send.envelope for send in sends if send.topic == topics.to_cloud()]
        return replies, _note(envelope, replies)

    def _answered(self, envelope: Envelope) -> Note:
        """The cloud's answer to an outbox entry: EdgeHub's part."""
        assert envelope.parent is not None
        pending = self.outbox.pop(envelope.parent, None)
        if pending is None:  # an entry answered twice, or replaced (a newer status) before its answer came
            return Note("late")
        kind = pending.envelope.res.kind if pending.envelope.res is not None else ""
        if kind == kinds.NODE and envelope.op == Op.RESPONSE:
            self.registered = True
        return Note("acked" if envelope.op == Op.RESPONSE else "refused", kind)


def _note(envelope: Envelope, replies: list[Envelope]) -> Note:
    """What MetaManager's answer to ``envelope`` says it did."""
    listing = envelope.group == Group.META and envelope.op == Op.QUERY
    key = str(envelope.res) if envelope.res is not None else ""
    if not replies or replies[0].op == Op.ERROR:
        return Note("refused", "listing" if listing else key)
    body = replies[0].body if isinstance(replies[0].body, dict) else {}
    if listing:
        kind = envelope.body.get("list") if isinstance(envelope.body, dict) else None
        return Note("listed", str(kind), last=body.get("next") is None)
    return Note("got", key, envelope.rv, str(body.get("outcome", "")))
