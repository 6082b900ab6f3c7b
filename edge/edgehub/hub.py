"""EdgeHub: the edge end of the link.

Downstream, it checks that each envelope is for this node and hands it to the
module that owns its group. Upstream, it takes what modules publish on
``edgehive/edge/to-cloud``: replies, keepalives and queries go straight up (the
cloud resends what it does not hear back about, and a query has a waiting caller
with its own timeout); everything else goes through the durable outbox and leaves
it only when the cloud acknowledges it. It follows the bridge's link state and
tells every module whether the cloud is there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.edgehub.outbox import Outbox
from edge.storage import DiskGuard, StoreSettings, is_disk_full
from runtime.bus import Bus
from schemas import kinds, topics
from schemas.envelope import Envelope, EnvelopeError, Group, Op, Send

log = logging.getLogger(__name__)

MODULE = "edgehub"

ROUTES = {
    Group.RESOURCE: "metamanager",
    Group.META: "metamanager",
    Group.TWIN: "devicetwin",
    Group.BUS: "eventbus",
    Group.USER: "eventbus",
}
DIRECT_OPS = frozenset({Op.RESPONSE, Op.ERROR, Op.KEEPALIVE, Op.QUERY})
QUERY_MEMORY_S = 120.0


@dataclass(frozen=True)
class EdgeHubSettings(StoreSettings):
    outbox: str = field(default="/var/lib/edgehive/outbox.db", metadata={"help": "SQLite file of the outbox"})
    outbox_max_bytes: int = field(default=64 * 1024 * 1024, metadata={"help": "cap of the outbox on disk"})
    keepalive_s: float = field(default=15.0, metadata={"help": "seconds between keepalives to the cloud"})
    resend_s: float = field(default=10.0, metadata={"help": "seconds before an unacknowledged entry is sent again"})
    upstream_window: int = field(default=50, metadata={"help": "outbox entries in flight at once"})


def coalesce_key(envelope: Envelope) -> str | None:
    """State entries coalesce per object: a newer status of the same pod replaces the unsent older one."""
    if envelope.res is not None and envelope.res.kind in kinds.STATE_KINDS and envelope.op in (Op.UPDATE, Op.PATCH):
        return str(envelope.res)
    return None


class EdgeHub:
    def __init__(self, settings: EdgeHubSettings) -> None:
        self.settings = settings
        self.node = settings.node
        self.outbox = Outbox(Path(settings.outbox), settings.outbox_max_bytes)
        self.guard = DiskGuard(Path(settings.outbox), settings.disk_reserve_bytes)
        self.bus: Bus | None = None
        self.link_up = False
        self._queries: dict[str, tuple[str, float]] = {}  # query id -> (asking module, when)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._inflight: dict[str, float] = {}  # msg_id -> when last sent
        self._sent_seq = 0
        self._dirty = True
        self._threads = [threading.Thread(target=self._sender, name="outbox-sender", daemon=True),
                         threading.Thread(target=self._keepalive, name="keepalive", daemon=True)]
        log.info("outbox %s holds %d entries (%d bytes)", settings.outbox, self.outbox.count(),
                 self.outbox.size_bytes)

    # -- wiring ---------------------------------------------------------------------

    def attach(self, bus: Bus) -> None:
        self.bus = bus
        bus.handle(topics.link_down(self.node), self.on_down)
        bus.handle(topics.to_cloud(), self.on_upstream)
        bus.handle(topics.link_state(self.node), self.on_link_state)
        # Until the bridge says otherwise, the cloud is away.
        bus.call_soon(lambda: self._announce(False, "starting"))
        for thread in self._threads:
            thread.start()

    def report(self) -> dict[str, Any]:
        """For status queries and metrics: what the outbox holds."""
        return {"outbox_size": self.outbox.count(), "link_up": self.link_up}

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self.outbox.close()

    # -- downstream -------------------------------------------------------------------

    def on_down(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        assert self.bus is not None
        if envelope.node != self.node:
            self.bus.counters.inc("wrong_node")
            log.warning("dropped %s for node %s arriving at node %s", envelope.id, envelope.node, self.node)
            return None
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            asked = self._queries.pop(envelope.parent, None)
            if asked is not None:
                return [Send(topics.inbox(topics.Side.EDGE, asked[0]), envelope)]
            if self.outbox.remove(envelope.parent):
                self.bus.counters.inc("upstream_acked")
                if envelope.op == Op.ERROR:
                    log.warning("the cloud refused upstream entry %s: %s", envelope.parent, envelope.body)
                with self._wake:
                    self._inflight.pop(envelope.parent, None)
                self._poke()
                return None
            if envelope.group == Group.HUB:
                return None  # a keepalive answered
        module = ROUTES.get(envelope.group)
        if module is None:  # group hub, and not an answer: no edge module takes it
            self.bus.counters.inc("refused")
            log.warning("dropped %s %s %s from the cloud: no edge module takes it", envelope.id,
                        envelope.group.value, envelope.op.value)
            return None
        return [Send(topics.from_cloud(module), envelope)]

    # -- upstream ---------------------------------------------------------------------

    def on_upstream(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        assert self.bus is not None
        if envelope.node != self.node:
            self.bus.counters.inc("wrong_node")
            log.warning("module %s tried to send %s as node %s; this is %s", envelope.src, envelope.id,
                        envelope.node, self.node)
            return [Send(topics.inbox(topics.Side.EDGE, envelope.src),
                         envelope.error(MODULE, 400, f"this node is {self.node}, not {envelope.node}"))]
        if envelope.op in DIRECT_OPS:
            if envelope.op == Op.QUERY:
                self._remember_query(envelope)
            if self.link_up:
                self.bus.publish(topics.link_up(self.node), envelope)
                self.bus.counters.inc("sent_direct")
            else:
                self.bus.counters.inc("dropped_offline")
            return None
        try:
            payload = envelope.encode(self.settings.max_envelope_size)
        except EnvelopeError as exc:  # re-encoded larger than it arrived (msgpack float32 becomes float64)
            self.bus.counters.inc("refused")
            return [Send(topics.inbox(topics.Side.EDGE, envelope.src), envelope.error(MODULE, 413, exc.reason))]
        evicted = self.outbox.evicted
        try:
            self.guard.check()
            self.outbox.add(envelope.id, payload, coalesce_key(envelope))
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            return self._disk_full(envelope, payload, str(exc))
        self.bus.counters.inc("outbox_added")
        if self.outbox.evicted > evicted:
            self.bus.counters.inc("outbox_evicted", self.outbox.evicted - evicted)
        self._poke()
        return None

    def _disk_full(self, envelope: Envelope, payload: bytes, reason: str) -> Iterable[Send] | None:
        """The outbox cannot take the entry. A state report (node, pod or device status) still goes up
        while the link is there, without the outbox: a newer one replaces it anyway, and it is how the
        cloud learns of the DiskPressure. Anything else is refused to its sender, which keeps it."""
        assert self.bus is not None
        if coalesce_key(envelope) is not None and self.link_up:
            self._send(payload)
            self.bus.counters.inc("sent_undurable")
            return None
        self.bus.counters.inc("disk_full")
        return [Send(topics.inbox(topics.Side.EDGE, envelope.src), envelope.error(MODULE, 507, reason))]

    def _poke(self) -> None:
        with self._wake:
            self._dirty = True
            self._wake.notify_all()

    def _remember_query(self, envelope: Envelope) -> None:
        now = time.monotonic()
        self._queries[envelope.id] = (envelope.src, now)
        if len(self._queries) > 1000:
            for qid, (_, when) in list(self._queries.items()):
                if now - when > QUERY_MEMORY_S:
                    del self._queries[qid]

    # -- the link ---------------------------------------------------------------------

    def on_link_state(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        up = envelope.op == Op.CONNECTED
        reason = envelope.body.get("reason", "") if isinstance(envelope.body, dict) else ""
        self._announce(up, str(reason))
        return None

    def _announce(self, up: bool, reason: str) -> None:
        assert self.bus is not None
        changed = up != self.link_up
        with self._wake:
            self.link_up = up
            if not up:
                self._inflight.clear()
                self._sent_seq = 0  # on return, send everything again, in order
            self._dirty = True
            self._wake.notify_all()
        if changed and up:
            # Say hello at once: the cloud starts this node's session on the first thing it hears.
            self.bus.publish(topics.link_up(self.node), self.bus.envelope(Group.HUB, Op.KEEPALIVE))
        if changed or reason == "starting":
            log.info("cloud link %s (%s); outbox holds %d entries", "up" if up else "down", reason,
                     self.outbox.count())
            self.bus.publish(topics.cloud_link(), self.bus.envelope(Group.HUB, Op.CONNECTED if up else
                                                                    Op.DISCONNECTED, body={"reason": reason}),
                             retain=True)

    def _keepalive(self) -> None:
        while not self._stop.wait(self.settings.keepalive_s):
            if self.link_up and self.bus is not None:
                try:
                    # The outbox size rides along, so the cloud can show what a node still has to say.
                    self.bus.publish(topics.link_up(self.node), self.bus.envelope(
                        Group.HUB, Op.KEEPALIVE, body={"outbox": self.outbox.count()}), timeout=5)
                except Exception:
                    log.warning("keepalive not sent", exc_info=True)

    def _sender(self) -> None:
        """Send outbox entries in order, at most ``upstream_window`` unacknowledged; resend the stale ones."""
        assert self.bus is not None
        window = self.settings.upstream_window
        while not self._stop.is_set():
            with self._wake:
                if not self._dirty:
                    self._wake.wait(timeout=1.0)
                self._dirty = False
                if not self.link_up:
                    continue
                now = time.monotonic()
                stale = [m for m, sent in self._inflight.items() if now - sent > self.settings.resend_s]
                room = window - len(self._inflight)
                after = self._sent_seq
            for msg_id in stale:
                entry = self.outbox.get(msg_id)
                with self._wake:
                    if entry is None:
                        self._inflight.pop(msg_id, None)
                        continue
                    self._inflight[msg_id] = time.monotonic()
                self._send(entry.payload)
                self.bus.counters.inc("upstream_resent")
            if room <= 0:
                continue
            batch = self.outbox.after(after, room)
            if len(batch) == room:
                self._poke()  # there may be more behind this batch once acks make room
            for entry in batch:
                with self._wake:
                    if not self.link_up:
                        break
                    self._inflight[entry.msg_id] = time.monotonic()
                    self._sent_seq = max(self._sent_seq, entry.seq)
                self._send(entry.payload)
                self.bus.counters.inc("upstream_sent")

    def _send(self, payload: bytes) -> None:
        assert self.bus is not None
        try:
            self.bus.connection.publish(topics.link_up(self.node), payload, timeout=10)
        except Exception:
            log.warning("could not hand an outbox entry to the broker; it stays in the outbox", exc_info=True)
