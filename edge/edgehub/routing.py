"""EdgeHub's decisions: envelopes in, what to publish and what to keep out. No threads, no bus, no clock.

The state is the outbox (outbox.py: what the node must tell the cloud, on disk until the
cloud acknowledges it; this module's store, as MetaManager's store is MetaManager's),
whether the cloud link is up, and the queries passed up (runtime/queries.py). hub.py runs
it on the bus's handler thread, with ``now`` from the monotonic clock; its sender thread
drains the outbox and its keepalive thread sends what ``keepalive()`` makes.

- Down: only what is for this node; an answer goes to the module that asked or settles an
  outbox entry; the rest goes by group to the module that owns it.
- Up: answers, queries and keepalives go straight up while the link is there (the cloud
  resends what it does not hear back about, and a query has a caller waiting with its own
  timeout); everything else goes into the outbox, which hub.py's sender drains through the
  window (window.py), in batches once the cloud's answer to a keepalive says it takes them.
- The link: the bridge says when the cloud link comes and goes; the node's modules are told
  (retained), and the cloud hears a hello at once, which starts the node's session there.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.edgehub.outbox import Outbox
from edge.edgehub.window import Window
from edge.storage import DiskGuard, is_disk_full
from runtime import hoptrace
from runtime.counters import Counters
from runtime.queries import DIRECT_OPS, QueryMemory
from schemas import kinds, topics
from schemas.batch import Batch
from schemas.envelope import Envelope, EnvelopeError, Group, Op, RawSend, Send
from schemas.events import KubeEvent
from schemas.fields import BodyError
from schemas.link import Keepalive, KeepaliveAnswer, LinkChange

log = logging.getLogger(__name__)

MODULE = "edgehub"
ROUTES = {
    Group.RESOURCE: "metamanager",
    Group.META: "metamanager",
    Group.TWIN: "devicetwin",
    Group.BUS: "eventbus",
    Group.USER: "eventbus",
}
GRANT_S = 40.0
"""How long the cloud's word that it takes batches (its answer to a keepalive) holds: two keepalive periods and
some. A cloud replaced by one of the previous version while the link stays up never answers again, and the node
goes back to one envelope per message when this runs out, or at the first batch refused, whichever is sooner."""
ANSWER_WAIT_S = 2.0
"""How long, after the link comes up, the outbox waits for the cloud's answer to the hello before it sends (a node
that asks for batches only). The outbox is at its largest then (everything queued during a cut), and what goes
before the answer goes one envelope per message; a CloudHub answers within a round trip, and one of the previous
version never does, which costs its nodes this much once per link."""
BATCH_MODULES = frozenset({"metamanager"})
"""Modules that take a batch from the cloud whole (and answer it with one); the others get its members alone."""


def coalesce_key(envelope: Envelope) -> str | None:
    """State entries coalesce per object: a newer status of the same pod replaces the unsent older one; a repeat of
    an Event (the same Event, its count higher) replaces its unsent older self."""
    if envelope.res is not None and envelope.res.kind in kinds.STATE_KINDS and envelope.op in (Op.UPDATE, Op.PATCH):
        return str(envelope.res)
    if envelope.res is not None and envelope.res.kind == kinds.EVENT and envelope.op == Op.UPDATE:
        return str(envelope.res)
    return None


@dataclass
class Routed:
    """What one decision asks the hub to do."""

    sends: list[Send | RawSend] = field(default_factory=list)
    """To publish now, as a handler's answer."""
    announce: list[Send] = field(default_factory=list)
    """The cloud-link announcement to the node's modules: published retained."""
    acked: str | None = None
    """The outbox entry the cloud just acknowledged: no longer in flight."""
    replaced: bool = False
    """``acked`` was no longer in the outbox: a newer entry of the same key replaced it (coalesced) while it was
    in flight. Its slot in the window is free all the same; left to the resend timer, the slots of replaced
    entries stayed taken for ``resend_s``, and with every device reporting each second the window filled with
    them and nothing went up for seconds at a time (bench mapper: 3-9 s while the cloud had answered all)."""
    queued: bool = False
    """The outbox has a new entry for the sender."""
    link: bool | None = None
    """The link just came up (True) or went down (False): the sender starts over from the oldest entry."""


class EdgeRouter:
    def __init__(self, node: str, outbox: Outbox, guard: DiskGuard, counters: Counters, max_size: int, *,
                 batch_bytes: int | None = None, window: Window | None = None, grant_s: float = GRANT_S,
                 answer_wait_s: float = ANSWER_WAIT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.node = node
        self.batch_bytes = batch_bytes
        """The largest batch this node takes from the cloud, said in every keepalive; None: no batches (and none
        sent up either: the cloud says it takes them only in answer to a keepalive that says so)."""
        self.window = window if window is not None else Window(200, 10.0)
        """What is in flight up the link (window.py); hub.py's sender and this router share it under hub's lock."""
        self.grant_s = grant_s
        self.cloud_batch_bytes: int | None = None
        """The largest batch the cloud takes up the link, from its last answer to a keepalive; None: send one
        envelope per message (no answer yet on this link, a cloud that takes none, or a batch refused)."""
        self._granted_at = 0.0
        self._keepalives: deque[str] = deque(maxlen=4)
        """The ids of the last keepalives sent: only an answer to one of them is the cloud's word on batches."""
        self.answer_wait_s = answer_wait_s
        self._clock = clock
        self._answer_due: float | None = None
        """While the outbox waits for the cloud's first answer on this link: until when (``clock``)."""
        self.outbox = outbox
        self.guard = guard
        self.counters = counters
        self.max_size = max_size
        self.link_up = False
        self.queries = QueryMemory()

    def _envelope(self, group: Group, op: Op, body: Any = None) -> Envelope:
        return Envelope(node=self.node, src=MODULE, group=group, op=op, body=body)

    # -- downstream ------------------------------------------------------------------------

    def from_cloud(self, envelope: Envelope, now: float) -> Routed:
        if envelope.node != self.node:
            self.counters.inc("wrong_node")
            log.warning("dropped %s for node %s arriving at node %s", envelope.id, envelope.node, self.node)
            return Routed()
        if envelope.op == Op.BATCH:
            return self._from_cloud_batch(envelope, now)
        asker = self.queries.asker(envelope, now)
        if asker is not None:
            return Routed([Send(topics.inbox(topics.Side.EDGE, asker), envelope)])
        answered = None
        if envelope.op in (Op.RESPONSE, Op.ERROR) and envelope.parent is not None:
            answered = envelope.parent
            if envelope.op == Op.ERROR and envelope.parent in self.window.batches:
                return self._batch_refused(envelope)
            if self.outbox.remove(envelope.parent):
                self.window.acked(envelope.parent)
                self.counters.inc("upstream_acked")
                if envelope.op == Op.ERROR:
                    log.warning("the cloud refused upstream entry %s: %s", envelope.parent, envelope.body)
                return Routed(acked=envelope.parent)
            if envelope.group == Group.HUB:  # an answer to EdgeHub itself: to a keepalive
                if envelope.op == Op.ERROR:
                    log.warning("the cloud refused keepalive %s: %s", envelope.parent, envelope.body)
                elif envelope.parent in self._keepalives:
                    self._cloud_answered(envelope, now)
                return Routed(queued=self._answer_came())
            if self.window.acked(answered):  # its entry was replaced (coalesced) while in flight
                self.counters.inc("upstream_acked_replaced")
            if envelope.op == Op.RESPONSE:
                # The answer to nothing still waiting: an entry acknowledged twice (after a resend), replaced or
                # evicted, or a query whose asker gave up long ago. Settled above; no module takes it. Passed on,
                # it reached MetaManager, which refused it and sent an error up the link for each.
                self.counters.inc("late_answers")
                log.debug("dropped the cloud's late answer to %s", answered)
                return Routed(acked=answered, replaced=True)
        module = ROUTES.get(envelope.group)
        if module is None:  # group hub, and not an answer: no edge module takes it
            self.counters.inc("refused")
            log.warning("dropped %s %s %s from the cloud: no edge module takes it", envelope.id,
                        envelope.group.value, envelope.op.value)
            return Routed()
        return Routed([Send(topics.from_cloud(module), envelope)], acked=answered, replaced=answered is not None)

    def _cloud_answered(self, envelope: Envelope, now: float) -> None:
        """The cloud's answer to a keepalive: how large a batch it takes up the link now, if any."""
        try:
            answer = KeepaliveAnswer.parse(envelope.body)
        except BodyError as exc:
            self.counters.inc("refused")
            log.warning("refused the cloud's answer %s to a keepalive: %s", envelope.id, exc)
            self.cloud_batch_bytes = None
            return
        if answer.batch_bytes != self.cloud_batch_bytes:
            log.info("the cloud takes %s up the link", "one envelope per message" if answer.batch_bytes is None
                     else f"batches of up to {answer.batch_bytes} bytes")
        self.cloud_batch_bytes = answer.batch_bytes
        self._granted_at = now

    def answer_wait(self, now: float) -> float:
        """Seconds the outbox still holds back on this link, waiting for the cloud's first answer to a keepalive
        (ANSWER_WAIT_S); 0: send."""
        if self._answer_due is None:
            return 0.0
        left = self._answer_due - now
        if left <= 0:
            self._answer_due = None
            return 0.0
        return left

    def _answer_came(self) -> bool:
        """The cloud answered a keepalive (whatever it said): an outbox held back for it may go. True when it was
        held, so the sender wakes."""
        held, self._answer_due = self._answer_due is not None, None
        return held

    def upstream_batch_bytes(self, now: float) -> int | None:
        """The byte budget of a batch up the link now, or None: one envelope per message. Only while the link is
        up and the cloud's last word on it is younger than ``grant_s``; never over this node's own
        ``max_envelope_size`` (what its modules may send it, so what its broker and bridge are set up to carry)."""
        if not self.link_up or self.cloud_batch_bytes is None or now - self._granted_at > self.grant_s:
            return None
        return min(self.cloud_batch_bytes, self.max_size)

    def _batch_refused(self, envelope: Envelope) -> Routed:
        """The cloud refused a batch of outbox entries whole (a member it cannot take, or a cloud that does not
        know batches after all): nothing of it was applied. Its members go again at once, each alone, and no
        batch goes up until the cloud says again that it takes them."""
        members = self.window.refused(str(envelope.parent)) or ()
        self.cloud_batch_bytes = None
        self.counters.inc("upstream_batch_refused")
        log.warning("the cloud refused batch %s (%d entries; they go again one by one): %s", envelope.parent,
                    len(members), envelope.body)
        return Routed(queued=True)

    def _from_cloud_batch(self, envelope: Envelope, now: float) -> Routed:
        """A batch whose members all go to MetaManager (the usual case: the cloud's objects) goes there whole and
        undecoded; MetaManager checks every member before applying any. A batch that spans modules is checked
        here, every member decoded, before any is passed on (a bad member refuses them all, so nothing of the
        batch is applied): then MetaManager's members go on as one batch, as they came, and the others alone,
        since no other module takes batches yet. A refused batch is answered with an error naming the member;
        the cloud still owes each member and sends it again."""
        try:
            batch = Batch.parse(envelope)
            modules = [ROUTES.get(group) for group in batch.groups]
            if len(set(modules)) == 1 and modules[0] in BATCH_MODULES:
                self.counters.inc("batches_passed")
                return Routed([Send(topics.from_cloud(str(modules[0])), envelope)])
            members = batch.members(self.max_size)
        except EnvelopeError as exc:
            self.counters.inc("batch_refused")
            self.counters.inc("refused")  # the count every refusal of bad input goes into
            log.warning("refused batch %s from the cloud: %s", envelope.id, exc)
            return Routed([Send(topics.link_up(self.node), envelope.error(MODULE, 400, str(exc)))])
        self.counters.inc("batches_split")
        routed = Routed()
        whole = [i for i, module in enumerate(modules) if module in BATCH_MODULES]
        if len(whole) > 1:
            routed.sends.append(Send(topics.from_cloud(str(modules[whole[0]])), batch.select(whole)))
        for index, member in enumerate(members):
            if len(whole) > 1 and index in whole:
                continue
            one = self.from_cloud(member, now)
            routed.sends += one.sends
            if one.acked is not None:  # an answer to an outbox entry, carried in a batch
                routed.acked, routed.replaced = one.acked, one.replaced
        return routed

    # -- upstream --------------------------------------------------------------------------

    def from_module(self, envelope: Envelope, now: float) -> Routed:
        if envelope.node != self.node:
            self.counters.inc("wrong_node")
            log.warning("module %s tried to send %s as node %s; this is %s", envelope.src, envelope.id,
                        envelope.node, self.node)
            return self._refuse(envelope, 400, f"this node is {self.node}, not {envelope.node}")
        if envelope.op == Op.BATCH and envelope.parent is None:
            return self._module_batch(envelope)
        if envelope.op in DIRECT_OPS or envelope.op == Op.BATCH:  # a batch from a module: its answers to one
            if not self.link_up:
                self.counters.inc("dropped_offline")
                if envelope.op == Op.QUERY:  # its asker need not wait out its timeout
                    return self._refuse(envelope, 503, "the cloud link is down")
                return Routed()
            if envelope.op == Op.QUERY:
                self.queries.remember(envelope, now)
            self.counters.inc("sent_direct")
            return Routed([Send(topics.link_up(self.node), envelope)])
        try:
            payload = envelope.encode(self.max_size)
        except EnvelopeError as exc:  # re-encoded larger than it arrived (msgpack float32 becomes float64)
            self.counters.inc("refused")
            return self._refuse(envelope, 413, exc.reason)
        return self._queue(envelope, payload)

    def _module_batch(self, envelope: Envelope) -> Routed:
        """Several entries for the outbox in one message (DeviceTwin's status reports of one interval): each
        member queued as if it had come alone (its own entry, id, coalescing and answer), all in one outbox
        transaction, from the bytes it came as. The frame or any member invalid, or a member that is not for the
        outbox (a query, an answer: those go up at once, alone), refuses the whole batch: nothing is queued."""
        try:
            batch = Batch.parse(envelope)
            members = batch.members(self.max_size)
            for index, member in enumerate(members):
                if member.op in DIRECT_OPS:
                    raise EnvelopeError(f"body.members[{index}].op", f"a {member.op.value} goes up at once, "
                                                                      "alone, not queued in a batch")
        except EnvelopeError as exc:
            self.counters.inc("refused")
            log.warning("refused a batch of %s: %s", envelope.src, exc)
            return self._refuse(envelope, 400, str(exc))
        routed = Routed()
        with self.outbox.batch():
            for member, payload in zip(members, batch.payloads, strict=True):
                one = self._queue(member, payload)
                routed.sends += one.sends
                routed.queued |= one.queued
        self.counters.inc("module_batches")
        return routed

    def _queue(self, envelope: Envelope, payload: bytes) -> Routed:
        """``envelope`` (encoded as ``payload``) into the outbox for the sender thread."""
        key = coalesce_key(envelope)
        event_type = None
        if envelope.res is not None and envelope.res.kind == kinds.EVENT:
            try:
                event = KubeEvent.parse(envelope.body, envelope.res)
            except BodyError as exc:
                self.counters.inc("refused")
                return self._refuse(envelope, 400, str(exc))
            if event.host != self.node:
                return self._refuse(envelope, 403, f"this node is {self.node}: an event from {event.host} is not its")
            event_type = event.type
        evicted, dropped = self.outbox.evicted, self.outbox.events_dropped
        try:
            self.guard.check()
            self.outbox.add(envelope.id, payload, key, event_type, group=envelope.group.value)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            return self._disk_full(envelope, payload, key, str(exc))
        self.counters.inc("outbox_added")
        if key is not None:
            hoptrace.hop("edgehub_outbox", key)
        if self.outbox.evicted > evicted:
            self.counters.inc("outbox_evicted", self.outbox.evicted - evicted)
        if self.outbox.events_dropped > dropped:
            self.counters.inc("outbox_events_dropped", self.outbox.events_dropped - dropped)
        return Routed(queued=True)

    def _disk_full(self, envelope: Envelope, payload: bytes, key: str | None, reason: str) -> Routed:
        """The outbox cannot take the entry. A state report (node, pod or device status) still goes up
        while the link is there, without the outbox: a newer one replaces it anyway, and it is how the
        cloud learns of the DiskPressure. Anything else is refused to its sender, which keeps it."""
        if key is not None and self.link_up:
            self.counters.inc("sent_undurable")
            return Routed([RawSend(topics.link_up(self.node), payload)])
        self.counters.inc("disk_full")
        return self._refuse(envelope, 507, reason)

    @staticmethod
    def _refuse(envelope: Envelope, code: int, reason: str) -> Routed:
        return Routed([Send(topics.inbox(topics.Side.EDGE, envelope.src), envelope.error(MODULE, code, reason))])

    def keepalive(self) -> Send | None:
        """A keepalive for the cloud while the link is up; the outbox size rides along, so that the cloud can
        show what the node still has to say."""
        if not self.link_up:
            return None
        body = Keepalive(self.outbox.count(), self.batch_bytes).as_body()
        return Send(topics.link_up(self.node), self._keepalive_envelope(body))

    def _keepalive_envelope(self, body: dict[str, Any] | None) -> Envelope:
        envelope = self._envelope(Group.HUB, Op.KEEPALIVE, body)
        self._keepalives.append(envelope.id)
        return envelope

    # -- the link --------------------------------------------------------------------------

    def from_bridge(self, envelope: Envelope) -> Routed:
        """The bridge's link state (retained on the node's link-state topic)."""
        try:
            change = LinkChange.parse(envelope.body)
            change.check_op(envelope.op)
        except BodyError as exc:
            self.counters.inc("refused")
            log.warning("refused link state %s from %s: %s", envelope.id, envelope.src, exc)
            return Routed()
        return self.link_changed(envelope.op == Op.CONNECTED, change.reason)

    def from_native(self, payload: bytes) -> Routed:
        """The edge mosquitto's own bridge state (``--bridge native``): its raw, retained notification on the
        node's hello topic, ``1`` at each connect to the cloud broker and ``0`` at start and when it drops. It has
        no reason, so the reasons are fixed ones. Anything else is not mosquitto's: refused, counted and logged."""
        if payload == topics.NATIVE_UP:
            return self.link_changed(True, "cloud broker connected")
        if payload == topics.NATIVE_DOWN:
            return self.link_changed(False, "cloud broker unreachable")
        self.counters.inc("refused")
        self.counters.inc("refused_link_state")
        log.warning("refused a native link state of %d bytes on %s: not %r or %r", len(payload),
                    topics.link_hello(self.node), topics.NATIVE_UP, topics.NATIVE_DOWN)
        return Routed()

    def starting(self) -> Routed:
        """Until the bridge says otherwise, the cloud is away; the node's modules are told so at once, since a
        retained announcement from before a restart may say the opposite."""
        return self.link_changed(False, "starting", announce=True)

    def link_changed(self, up: bool, reason: str, *, announce: bool = False) -> Routed:
        changed = up != self.link_up
        self.link_up = up
        routed = Routed(link=up if changed else None)
        if changed:  # whatever was in flight goes again on the new link, and the cloud there says anew what it takes
            # Counted here, whichever bridge carries the link: with mosquitto's own there are no bridge metrics.
            self.counters.inc("link_connects" if up else "link_drops")
            self.window.restart()
            self.cloud_batch_bytes = None
            self._answer_due = self._clock() + self.answer_wait_s if up and self.batch_bytes is not None else None
        if changed and up:  # say hello at once: the cloud starts this node's session on the first thing it hears
            routed.sends.append(Send(topics.link_up(self.node), self._keepalive_envelope(
                Keepalive(batch_bytes=self.batch_bytes).as_body())))
        if changed or announce:
            log.info("cloud link %s (%s); outbox holds %d entries", "up" if up else "down", reason,
                     self.outbox.count())
            routed.announce.append(Send(topics.cloud_link(), self._envelope(
                Group.HUB, Op.CONNECTED if up else Op.DISCONNECTED, LinkChange(reason).as_body())))
        return routed

    def report(self) -> dict[str, Any]:
        """For status queries and metrics: what the outbox holds."""
        return {"outbox_size": self.outbox.count(), "outbox_events": self.outbox.events, "link_up": self.link_up}
