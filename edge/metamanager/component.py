"""MetaManager as a process: the store and its logic on the edge bus."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edge.batches import take_batch
from edge.linkstate import LinkState
from edge.metamanager.manager import MODULE, BadObject, MetaManager
from edge.metamanager.store import MetaStore
from edge.storage import DiskFull, DiskGuard, StoreSettings, is_disk_full
from runtime.bus import Bus, RequestError, RequestTimeout
from runtime.metrics import SQLITE_COMMIT_SECONDS
from schemas import topics
from schemas.batch import MAX_MEMBERS, Batch, pack
from schemas.envelope import Envelope, EnvelopeError, Group, Op, Send

log = logging.getLogger(__name__)

MAX_BATCH = 200
"""Writes committed in one transaction at most (a batch from the link counts its members)."""
ANSWER_BATCH_BYTES = 64 * 1024
"""The largest batch of answers sent up. Answers are small (about 150 bytes: the key, the version, the outcome);
this stays far under any envelope limit a cloud would set, whatever the node's own is."""


BATCH_TAKERS = frozenset({topics.inbox(topics.Side.EDGE, "edged"), topics.inbox(topics.Side.EDGE, "devicetwin")})
"""The inboxes whose components take batches (``Bus.handle(..., batches=True)``): the objects forwarded to each
after one commit go as a few messages, not one each. A burst of a thousand ConfigMaps was a thousand messages
through the edge broker to EdgeD, the broker's costliest work in ``bench cloud``."""


@dataclass(frozen=True)
class LinkBatch:
    """A batch from the cloud with every member checked: applied with whatever else is queued, answered as one."""

    envelope: Envelope
    members: list[Envelope]


def _weight(item: Envelope | LinkBatch) -> int:
    return len(item.members) if isinstance(item, LinkBatch) else 1


@dataclass(frozen=True)
class MetaManagerSettings(StoreSettings):
    db: str = field(default="/var/lib/edgehive/metamanager.db", metadata={"help": "SQLite file of the store"})
    cloud_query_timeout: float = field(default=3.0, metadata={
        "help": "seconds to wait for the cloud when a module asks for an object this node does not hold"})


class MetaManagerComponent:
    def __init__(self, settings: MetaManagerSettings, bus: Bus) -> None:
        self.settings = settings
        self.store = MetaStore(Path(settings.db))
        self.guard = DiskGuard(Path(settings.db), settings.disk_reserve_bytes)
        self.manager = MetaManager(self.store, settings.node, settings.max_envelope_size)
        self.bus = bus
        self.link = LinkState(bus)
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="query")
        self._writes: queue.Queue[Envelope | LinkBatch | None] = queue.Queue()
        self._committer = threading.Thread(target=self._commit_loop, name="committer", daemon=True)
        log.info("store %s holds %d objects", settings.db, self.store.count())

    def start(self) -> None:
        self.bus.handle(topics.from_cloud(MODULE), self.on_cloud)
        self.bus.handle(self.bus.inbox, self.on_local)
        self.link.start()
        self._committer.start()

    def on_cloud(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """Writes go to the committer, which applies whatever has queued up in one transaction.

        The MQTT acknowledgement to the broker comes before the commit; the cloud's
        acknowledgement (the ``response``) only after it, and that is the one that counts:
        what the cloud has not heard back about, it sends again.

        A batch (schemas/batch.py) is checked whole here, every member decoded, before any of it is queued: one
        bad member refuses it all (an error naming the member goes up; nothing is applied; the cloud still owes
        each member and sends it again).
        """
        if envelope.op == Op.BATCH:
            try:
                members = Batch.parse(envelope).members(self.settings.max_envelope_size)
            except EnvelopeError as exc:
                self.bus.counters.inc("batch_refused")
                self.bus.counters.inc("refused")  # the count every refusal of bad input goes into
                log.warning("refused batch %s from the cloud, nothing of it applied: %s", envelope.id, exc)
                return [Send(topics.to_cloud(), envelope.error(MODULE, 400, str(exc)))]
            self.bus.counters.inc("batches_received")
            self._writes.put(LinkBatch(envelope, members))
            return None
        self._writes.put(envelope)
        return None

    def _commit_loop(self) -> None:
        while (first := self._writes.get()) is not None:
            work = take_batch(self._writes, first, MAX_BATCH, _weight)
            batch = [m for item in work for m in (item.members if isinstance(item, LinkBatch) else (item,))]
            try:
                self.guard.check()
                with SQLITE_COMMIT_SECONDS.time():
                    sends = self.manager.on_cloud_batch(batch)
            except Exception as exc:
                # Not acknowledged either way: the cloud sends these again, so nothing it sent is lost.
                if is_disk_full(exc):  # the guard said so once already; SQLite's own ENOSPC is said here
                    self.bus.counters.inc("disk_full", len(batch))
                    (log.debug if isinstance(exc, DiskFull) else log.error)("refused %d writes: %s", len(batch), exc)
                else:
                    log.exception("a batch of %d writes failed; the cloud will resend them", len(batch))
                continue
            if self.manager.failed:
                self.bus.counters.inc("batch_errors", self.manager.failed)
                self.manager.failed = 0
            if self.manager.stale:
                self.bus.counters.inc("stale_refused", self.manager.stale)
                self.manager.stale = 0
            self._send(self.forwards_packed(self.answers_packed(work, sends)))

    def answers_packed(self, work: list[Envelope | LinkBatch], sends: list[Send]) -> list[Send]:
        """The answers to a batch's members go up as one batch (or a few, by ``ANSWER_BATCH_BYTES``), after every
        other send; the rest as they were. Each answer keeps its ``parent``, the member's id, which is what the
        cloud settles; the batch's own ``parent`` is the batch it answers, for the logs."""
        batch_of = {member.id: index for index, item in enumerate(work) if isinstance(item, LinkBatch)
                    for member in item.members}
        if not batch_of:
            return sends
        out: list[Send] = []
        answers: dict[int, list[Envelope]] = {}
        for send in sends:
            index = batch_of.get(send.envelope.parent or "") if send.topic == topics.to_cloud() else None
            if index is None:
                out.append(send)
            else:
                answers.setdefault(index, []).append(send.envelope)
        for index, replies in answers.items():
            carrier = work[index]
            assert isinstance(carrier, LinkBatch)
            for reply in replies:
                if reply.op == Op.ERROR:
                    self.bus.counters.inc("refused")
                    log.info("refused %s from %s: %s", reply.parent, reply.node, reply.body)
            for item in pack(self.settings.node, MODULE, replies, max_members=MAX_MEMBERS,
                             max_bytes=ANSWER_BATCH_BYTES, parent=carrier.envelope.id):
                out.append(Send(topics.to_cloud(), item.envelope))
        return out

    def forwards_packed(self, sends: list[Send]) -> list[Send]:
        """The forwards to each of ``BATCH_TAKERS`` packed into batches, in their order, ahead of the rest (an
        answer still goes after the forward of what it answers). Each forward was checked to fit the envelope
        limit alone (manager.py), so each fits a batch of that limit."""
        forwards: dict[str, list[Envelope]] = {}
        rest: list[Send] = []
        for send in sends:
            if send.topic in BATCH_TAKERS:
                forwards.setdefault(send.topic, []).append(send.envelope)
            else:
                rest.append(send)
        packed = [Send(topic, item.envelope) for topic, members in forwards.items()
                  for item in pack(self.settings.node, MODULE, members, max_members=MAX_MEMBERS,
                                   max_bytes=self.settings.max_envelope_size)]
        return packed + rest

    def _send(self, sends: list[Send]) -> None:
        """Count refusals, then send each answer on its own: one that cannot be sent must neither stop the
        others nor end this thread (an exception here would end the committer for good while the process
        stayed up)."""
        for send in sends:
            if send.envelope.op == Op.ERROR:
                self.bus.counters.inc("refused")
                log.info("refused %s from %s: %s", send.envelope.parent, send.envelope.node, send.envelope.body)
            try:
                self.bus.send([send])
            except Exception:
                self.bus.counters.inc("handler_errors")
                log.exception("could not send %s %s to %s", send.envelope.op.value, send.envelope.res or "",
                              send.topic)

    def on_local(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """Queries are answered on their own threads (SQLite reads run beside the writer in WAL mode), so a
        burst of writes from the cloud never starves EdgeD's listing, and a query that has to ask the cloud
        holds up no write."""
        if envelope.op == Op.QUERY and envelope.group in (Group.META, Group.RESOURCE):
            self._readers.submit(self._answer, envelope)
        return None

    def _answer(self, envelope: Envelope) -> None:
        try:
            key = envelope.res
            if key is not None and self.link.connected and self.manager.lookup(key) is None:
                self._ask_cloud(envelope)
            self._send(self.manager.on_local(envelope))
        except Exception:
            log.exception("answering query %s from %s failed", envelope.id, envelope.src)

    def _ask_cloud(self, request: Envelope) -> None:
        """An object the node does not hold yet: ask the cloud once, and keep the answer."""
        assert request.res is not None
        query = Envelope(node=self.settings.node, src=MODULE, group=Group.META, op=Op.QUERY, res=request.res)
        try:
            reply = self.bus.request(topics.to_cloud(), query, timeout=self.settings.cloud_query_timeout)
            self.manager.remember(request.res, reply.rv, reply.body)
        except (RequestTimeout, RequestError, BadObject) as exc:
            log.info("the cloud did not provide %s: %s", request.res, exc)

    def close(self) -> None:
        self._writes.put(None)
        self._committer.join(timeout=10)
        self._readers.shutdown(wait=True, cancel_futures=True)
        self.store.close()
