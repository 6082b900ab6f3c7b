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

from broker.bus import Bus, RequestError, RequestTimeout
from broker.connection import PublishTimeout
from broker.metrics import SQLITE_COMMIT_SECONDS
from broker.runtime import ComponentSettings
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin, Publication
from edge.metaclient import list_objects
from schemas import kinds, topics
from schemas.envelope import Envelope, Group, Op, Send
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

MODULE = "devicetwin"
MAX_BATCH = 500
PUBLICATIONS_PER_ENVELOPE = 300  # keeps each envelope well under the 1 MiB limit


@dataclass(frozen=True)
class DeviceTwinSettings(ComponentSettings):
    db: str = field(default="/var/lib/edgehive/devicetwin.db", metadata={"help": "SQLite file of the twins"})
    report_interval_s: float = field(default=0.2, metadata={"help": "how often device news go to the cloud"})


class DeviceTwinComponent:
    def __init__(self, settings: DeviceTwinSettings) -> None:
        self.settings = settings
        self.store = TwinStore(Path(settings.db))
        self.twin = DeviceTwin(self.store, settings.node)
        self.bus: Bus | None = None
        self._work: queue.Queue[Envelope | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="committer", daemon=True)
        self._metamanager_pid: object = None

    def attach(self, bus: Bus) -> None:
        self.bus = bus
        bus.handle(bus.inbox, self.on_message)
        bus.handle(topics.status("metamanager"), self.on_metamanager_status)
        self._thread.start()

    def on_metamanager_status(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        """At start, and whenever MetaManager restarts: take what it holds (a forward may have been lost)."""
        body = envelope.body if isinstance(envelope.body, dict) else {}
        if body.get("state") == "up" and body.get("pid") != self._metamanager_pid:
            self._metamanager_pid = body.get("pid")
            threading.Thread(target=self._relist, name="relist", daemon=True).start()
        return None

    def _relist(self) -> None:
        assert self.bus is not None
        try:
            objects = {**list_objects(self.bus, kinds.DEVICEMODEL), **list_objects(self.bus, kinds.DEVICE)}
        except (RequestTimeout, RequestError, PublishTimeout) as exc:
            log.warning("could not list devices from MetaManager (%s); will try when it restarts", exc)
            return
        self._work.put(Envelope(node=self.settings.node, src="metamanager", group=Group.META, op=Op.QUERY,
                                body={"relist": [[str(k), v] for k, v in objects.items()]}))

    def close(self) -> None:
        self._work.put(None)
        self._thread.join(timeout=10)
        self.store.close()

    def on_message(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        from_eventbus = envelope.src == "eventbus" and envelope.group == Group.TWIN
        from_store = envelope.src == "metamanager" and envelope.res is not None and envelope.res.kind in (
            kinds.DEVICE, kinds.DEVICEMODEL)
        from_store = from_store and envelope.op in (Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH)
        if from_eventbus or from_store:
            self._work.put(envelope)
        return None

    def _loop(self) -> None:
        assert self.bus is not None
        last_report = 0.0
        while True:
            batch: list[Envelope] = []
            try:
                first = self._work.get(timeout=self.settings.report_interval_s)
                if first is None:
                    return
                batch.append(first)
            except queue.Empty:
                pass  # nothing arrived: only a report may be due
            while batch and len(batch) < MAX_BATCH:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._work.put(None)
                    break
                batch.append(item)
            publications: list[Publication] = []
            if batch:
                try:
                    with SQLITE_COMMIT_SECONDS.time(), self.store.transaction():
                        for envelope in batch:
                            publications += self._apply(envelope)
                except Exception:
                    log.exception("a batch of %d device messages failed", len(batch))
                    self.bus.counters.inc("batch_errors")
                    continue
            for start in range(0, len(publications), PUBLICATIONS_PER_ENVELOPE):
                chunk = publications[start:start + PUBLICATIONS_PER_ENVELOPE]
                try:
                    self.bus.publish(topics.inbox(topics.Side.EDGE, "eventbus"), self.bus.envelope(
                        Group.BUS, Op.UPDATE, body={"publish": [[p.topic, p.payload, p.qos, p.retain]
                                                                for p in chunk]}), timeout=30)
                except Exception:
                    log.exception("could not hand %d answers to EventBus", len(chunk))
            if self.twin.dirty and time.monotonic() - last_report >= self.settings.report_interval_s:
                last_report = time.monotonic()
                for key, status in self.twin.take_reports():
                    self.bus.publish(topics.to_cloud(), self.bus.envelope(Group.TWIN, Op.UPDATE, res=key,
                                                                          body={"status": status}), timeout=30)
                    self.bus.counters.inc("reports")

    def _apply(self, envelope: Envelope) -> list[Publication]:
        body = envelope.body if isinstance(envelope.body, dict) else {}
        if envelope.src == "metamanager" and "relist" in body:
            return self.twin.replace_devices({ResourceKey.parse(k): v for k, v in body["relist"]})
        if envelope.src == "metamanager":
            assert envelope.res is not None
            return self.twin.on_cloud(envelope.res, None if envelope.op == Op.DELETE else envelope.body)
        out: list[Publication] = []
        for item in body.get("requests") or []:
            try:
                namespace, name, request, payload = item
            except (TypeError, ValueError):
                continue
            if not isinstance(payload, bytes) or not isinstance(request, str):
                continue
            if request == "membership/get":
                out += self.twin.membership_get(payload)
            else:
                out += self.twin.on_device(str(namespace), str(name), request, payload)
        return out
