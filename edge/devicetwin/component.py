"""DeviceTwin as a process: one committer thread owns the store and answers in batches.

Requests (from EventBus) and cloud objects (from MetaManager) queue up; the committer
applies whatever has gathered in one transaction, then hands EventBus every answer
of the batch in one envelope, and at most every ``report_interval_s`` sends the
changed devices' status to the cloud through EdgeHub's outbox (coalesced there by
device, so a node offline for hours sends one status per device when it returns).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.batches import take_batch
from edge.devicetwin.reporting import CloudReports
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from edge.metaclient import MetaManagerRestarts, list_objects
from edge.storage import DiskFull, DiskGuard, StoreSettings, is_storage_error
from runtime import hoptrace
from runtime.bus import Bus, RequestError, RequestTimeout
from runtime.connection import PublishTimeout
from runtime.metrics import SQLITE_COMMIT_SECONDS
from schemas import kinds, topics
from schemas.batch import MAX_MEMBERS, Packed, pack
from schemas.devicebus import MEMBERSHIP_GET, EncodedPublication, Publication, parse_requests, publish_body
from schemas.envelope import Envelope, Group, Op, Send
from schemas.fields import BodyError
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

MODULE = "devicetwin"
MAX_BATCH = 500
"""About this many device requests (and cloud objects) are applied in one transaction, counted one by one (the
last envelope taken may go over); EventBus hands them over up to 500 in an envelope. Counted by envelope, a busy
node's backlog made batches of 10,000 requests (three quarters of a second of work) whose answers all waited for
the last one, while EventBus, with nothing to publish, idled; batches of this size keep the answers flowing while
the next batch is applied."""
PUBLICATIONS_PER_ENVELOPE = 300  # keeps each envelope well under the 1 MiB limit


RELIST_ATTEMPTS = 10


def status_reports(node: str, reports: list[tuple[ResourceKey, dict[str, Any]]], max_bytes: int) -> list[Packed]:
    """The messages that carry ``reports`` (device statuses) to EdgeHub: one Device status update each, packed into
    as few batches as ``max_bytes`` allows (a lone report goes as itself)."""
    members = [Envelope(node=node, src=MODULE, group=Group.TWIN, op=Op.UPDATE, res=key, body={"status": status})
               for key, status in reports]
    return pack(node, MODULE, members, max_members=MAX_MEMBERS, max_bytes=max_bytes)


@dataclass(frozen=True)
class Relist:
    """MetaManager's full list of devices and models, queued for the committer.

    A type of its own, not an envelope with a ``relist`` body, so that no Device object from the cloud
    that happens to carry a ``relist`` field can be taken for one.
    """

    objects: dict[ResourceKey, dict[str, Any]]
    report_all: bool = False
    """Send every device's status to the cloud again (what was on its way may have been lost)."""


@dataclass(frozen=True)
class DeviceTwinSettings(StoreSettings):
    db: str = field(default="/var/lib/edgehive/devicetwin.db", metadata={"help": "SQLite file of the twins"})
    report_interval_s: float = field(default=0.2, metadata={"help": "how often device news go to the cloud"})
    report_cycle_ms: int = field(default=1000, metadata={
        "help": "at most one new value per this many ms of a property (or state) whose Device sets no "
                "reportCycle goes to the cloud (KubeEdge's mappers report every 1,000 ms by default); a value after "
                "a quiet cycle goes at once; 0: every value"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.report_cycle_ms < 0:
            raise ValueError(f"report_cycle_ms must be 0 or more, not {self.report_cycle_ms}")


def requests_weight(item: Envelope | Relist) -> int:
    """How many requests or objects ``item`` brings (one for anything that is not a batch of requests; a body
    that is no batch is refused when applied, and weighs one until then)."""
    if isinstance(item, Envelope) and isinstance(item.body, dict):
        requests = item.body.get("requests")
        if isinstance(requests, list):
            return max(1, len(requests))
    return 1


def failed_answers(twin: DeviceTwin, batch: list[Envelope | Relist], reason: str) -> list[Publication]:
    """What devices are told when their batch could not be saved: KubeEdge answers a twin/update whose
    database write fails with 500 and the error; without this they got no answer at all."""
    out: list[Publication] = []
    for item in batch:
        if isinstance(item, Relist) or item.src == "metamanager":
            continue
        try:
            requests = parse_requests(item.body)
        except BodyError:
            continue  # refused while the batch was applied; counted there
        for request in requests:
            if not isinstance(request, BodyError) and request.request != MEMBERSHIP_GET:
                out += twin.store_failed(request.namespace, request.name, request.request, request.payload, reason)
    return out


class DeviceTwinComponent:
    def __init__(self, settings: DeviceTwinSettings, bus: Bus) -> None:
        self.settings = settings
        self.store = TwinStore(Path(settings.db))
        self.twin = DeviceTwin(self.store, settings.node,
                               reports=CloudReports(default_cycle_ms=settings.report_cycle_ms))
        self.bus = bus
        self._work: queue.Queue[Envelope | Relist | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="committer", daemon=True)
        # at start, and whenever MetaManager restarts: take what it holds (a forward may have been lost)
        self.metamanager = MetaManagerRestarts(bus, lambda: threading.Thread(target=self._relist, name="relist",
                                                                             daemon=True).start())
        self.guard = DiskGuard(Path(settings.db), settings.disk_reserve_bytes)
        self._refused_while_full = False

    def start(self) -> None:
        self.bus.handle(self.bus.inbox, self.on_message, batches=True)  # MetaManager batches its forwards
        self.bus.handle(topics.status("metamanager"), self.metamanager.on_status)
        self.bus.on_session_lost(self.on_session_lost)
        self._thread.start()

    def on_session_lost(self) -> None:
        """The edge broker lost its sessions: a forward from MetaManager, and a report on its way to EdgeHub,
        may have gone with them."""
        threading.Thread(target=self._relist, kwargs={"report_all": True}, name="relist", daemon=True).start()

    def _relist(self, report_all: bool = False) -> None:
        for attempt in range(1, RELIST_ATTEMPTS + 1):
            try:
                objects = {**list_objects(self.bus, kinds.DEVICEMODEL), **list_objects(self.bus, kinds.DEVICE)}
            except (RequestTimeout, RequestError, PublishTimeout) as exc:
                log.warning("could not list devices from MetaManager (%s; attempt %d of %d)", exc, attempt,
                            RELIST_ATTEMPTS)
                time.sleep(min(5.0, 0.5 * attempt))  # backoff between requests, on this relist's own thread
                continue
            self._work.put(Relist(objects, report_all))
            return
        log.error("gave up listing devices from MetaManager; they are listed again when it restarts")

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(timeout=10)
        self.store.close()

    def on_message(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        # EventBus hands over devices' MQTT messages; the DMI process, mappers' reports in the same form.
        from_eventbus = envelope.src in ("eventbus", "dmi") and envelope.group == Group.TWIN
        from_store = envelope.src == "metamanager" and envelope.res is not None and envelope.res.kind in (
            kinds.DEVICE, kinds.DEVICEMODEL)
        from_store = from_store and envelope.op in (Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH)
        if from_eventbus or from_store:
            self._work.put(envelope)
        return None

    def _loop(self) -> None:
        last_report = 0.0
        while True:
            batch: list[Envelope | Relist] = []
            try:
                first = self._work.get(timeout=self.settings.report_interval_s)
                if first is None:
                    return
                batch = take_batch(self._work, first, MAX_BATCH, requests_weight)
            except queue.Empty:
                pass  # nothing arrived: only a report may be due
            publications: list[Publication] = []
            full = self._room_for(batch) if batch else None
            if full is not None:
                publications = failed_answers(self.twin, batch, full)  # refused unapplied: told so, as below
            elif batch:
                try:
                    with SQLITE_COMMIT_SECONDS.time(), self.store.transaction():
                        for item in batch:
                            publications += self._apply_one(item)
                except Exception as exc:
                    log.exception("a batch of %d device messages failed", len(batch))
                    self.bus.counters.inc("batch_errors")
                    self.twin.forget_deltas()
                    publications = failed_answers(self.twin, batch, str(exc) or type(exc).__name__)
                finally:
                    if refused := self.twin.take_refused():
                        self.bus.counters.inc("refused", refused)
            encoded = self._encoded(publications)
            for start in range(0, len(encoded), PUBLICATIONS_PER_ENVELOPE):
                chunk = encoded[start:start + PUBLICATIONS_PER_ENVELOPE]
                try:
                    self.bus.publish(topics.inbox(topics.Side.EDGE, "eventbus"), self.bus.envelope(
                        Group.BUS, Op.UPDATE, body=publish_body(chunk)), timeout=30)
                except Exception:
                    log.exception("could not hand %d answers to EventBus", len(chunk))
            if full is None and self.twin.dirty and time.monotonic() - last_report >= self.settings.report_interval_s:
                last_report = time.monotonic()
                self._report(self.twin.take_reports())

    def _report(self, reports: list[tuple[ResourceKey, dict[str, Any]]]) -> None:
        """The changed devices' status to the cloud: one message to EdgeHub for all of them (a batch, which EdgeHub
        queues as one entry per device, in one outbox commit), not one each: on a busy node a report per device
        per interval was a tenth of what crossed the edge broker, and an outbox commit each."""
        for packed in status_reports(self.bus.settings.node, reports, self.bus.settings.max_size):
            try:
                self.bus.publish(topics.to_cloud(), packed.envelope, timeout=30)
            except Exception:  # too large, or the broker gone: this thread must live on either way
                self.bus.counters.inc("handler_errors", len(packed.members))
                log.exception("could not send the status of %s to the cloud",
                              ", ".join(str(member.res) for member in packed.members))
                continue
            self.bus.counters.inc("reports", len(packed.members))
            for member in packed.members:
                hoptrace.hop("twin_sent", str(member.res))

    def _encoded(self, publications: list[Publication]) -> list[EncodedPublication]:
        """Each answer's JSON written here, so that EventBus publishes the bytes as they are; one that cannot be
        JSON (a value nested deeper than json goes) is refused and counted alone, the others go."""
        out = []
        for publication in publications:
            try:
                out.append(publication.encoded())
            except (TypeError, ValueError, RecursionError) as exc:
                self.bus.counters.inc("refused")
                log.warning("refused an answer on %s: it cannot be written as JSON (%s)", publication.topic,
                            type(exc).__name__)
        return out

    def _room_for(self, batch: list[Envelope | Relist]) -> str | None:
        """Why not while the disk is full (None: there is room): the batch is refused (a device's update is not
        taken, so its next one counts). Once there is room again, the devices are listed from MetaManager anew,
        since an update it forwarded meanwhile was refused here."""
        try:
            self.guard.check()
        except DiskFull as exc:
            self.bus.counters.inc("disk_full", len(batch))
            self._refused_while_full = True
            return str(exc)
        if self._refused_while_full:
            self._refused_while_full = False
            threading.Thread(target=self._relist, name="relist", daemon=True).start()
        return None

    def _apply_one(self, item: Envelope | Relist) -> list[Publication]:
        """One queued item in its own savepoint: if it fails, it alone is rolled back and the rest of the
        batch is kept (one bad envelope must not cost every device request that happens to share its batch)."""
        try:
            with self.store.transaction():
                return self._apply(item)
        except Exception as exc:
            if is_storage_error(exc):
                raise  # the store itself (a full disk): the whole batch fails, as before
            self.bus.counters.inc("batch_errors")
            log.exception("could not apply %s", item.id if isinstance(item, Envelope) else "MetaManager's list")
            return []

    def _apply(self, item: Envelope | Relist) -> list[Publication]:
        if isinstance(item, Relist):
            if item.report_all:
                self.twin.report_all()
            return self.twin.replace_devices(item.objects)
        envelope = item
        if envelope.src == "metamanager":
            assert envelope.res is not None
            return self.twin.on_cloud(envelope.res, None if envelope.op == Op.DELETE else envelope.body)
        try:
            requests = parse_requests(envelope.body)
        except BodyError as exc:
            self._refuse(envelope, exc)
            return []
        out: list[Publication] = []
        for request in requests:
            if isinstance(request, BodyError):
                self._refuse(envelope, request)
            elif request.request == MEMBERSHIP_GET:
                out += self.twin.membership_get(request.payload)
            elif envelope.src == "dmi" and request.request == "twin/update":  # a mapper's report: all its twins
                hoptrace.hop("twin_applied", f"{request.namespace}/{request.name}")
                out += self.twin.on_report(request.namespace, request.name, request.payload)
            else:
                if request.request == "twin/update":
                    hoptrace.hop("twin_applied", f"{request.namespace}/{request.name}")
                out += self.twin.on_device(request.namespace, request.name, request.request, request.payload)
        return out

    def _refuse(self, envelope: Envelope, reason: BodyError) -> None:
        self.twin.refused += 1
        log.warning("refused part of %s from %s: %s", envelope.id, envelope.src, reason)
