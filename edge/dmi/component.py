"""The DMI process: KubeEdge's device management interface for this node's mappers.

It serves DeviceManagerService on a Unix socket (KubeEdge's /etc/kubeedge/dmi.sock by default), knows
the node's Devices and DeviceModels from MetaManager (its list at start and whenever MetaManager
restarts, its forwards after each commit), hands mappers' reports to DeviceTwin as the same requests
EventBus makes of devices' MQTT messages (so DeviceTwin stores them and sends them to the cloud as it
does any twin), and calls each mapper's DeviceMapperService when its devices or models change.

Everything it needs comes from the node's store, so a mapper registers and reports with the link down.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc

from edge.dmi.devicemanager import DeviceManager, Mapper, MapperCall
from edge.dmi.mapperclient import MapperCalls
from edge.dmi.server import DeviceManagerServicer, serve
from edge.dmi.settings import DmiSettings
from edge.metaclient import MetaManagerRestarts, list_objects
from runtime.bus import Bus, RequestError, RequestTimeout
from runtime.connection import PublishTimeout
from schemas import kinds, topics
from schemas.devicebus import DeviceRequest, requests_body
from schemas.envelope import Envelope, Group, Op, Send
from schemas.fields import BodyError

log = logging.getLogger(__name__)

RELIST_ATTEMPTS = 10
DEVICETWIN = topics.inbox(topics.Side.EDGE, "devicetwin")


class DmiComponent:
    def __init__(self, settings: DmiSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.manager = DeviceManager(settings.node, count=bus.counters.inc)
        self.lock = threading.Lock()
        self.mappers_file = Path(settings.mappers_file)
        self.manager.mappers.update(load_mappers(self.mappers_file))
        self.kept_file = Path(settings.kept_file) if settings.kept_file else self.mappers_file.with_name(
            "dmi-kept.json")
        self._kept = load_kept(self.kept_file)
        if self.manager.restore(self._kept):
            log.info("%d refused versions from before the restart: mappers keep the last good ones",
                     len(self.manager.refusals))
        self._kept = self.manager.kept()
        self.calls = MapperCalls(self._address_of, self._call_done, self._call_refused)
        self.servicer = DeviceManagerServicer(self.manager, self.lock, to_devicetwin=self.to_devicetwin,
                                              registered=self._registered, count=self.bus.counters.inc)
        self.server: grpc.Server | None = None
        self.metamanager = MetaManagerRestarts(bus, self._start_relist)
        self._failed_calls: dict[str, str] = {}

    def start(self) -> None:
        self.bus.handle(self.bus.inbox, self.on_message)
        self.bus.handle(topics.status("metamanager"), self.metamanager.on_status)
        self.bus.on_session_lost(self._start_relist)
        self.server = serve(self.servicer, Path(self.settings.socket), self.settings.max_message_bytes)
        log.info("DeviceManagerService on %s; %d mappers known", self.settings.socket, len(self.manager.mappers))

    def close(self) -> None:
        if self.server is not None:
            self.server.stop(grace=2).wait(5)
        self.calls.close()

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {"socket": self.settings.socket, "devices": len(self.manager.devices),
                    "mappers": {p: {"name": m.name, "address": m.address,
                                    "last_error": self._failed_calls.get(p)} for p, m in self.manager.mappers.items()},
                    "refused": {f"{kind}/{ident}": r.reason for (kind, ident), r in self.manager.refusals.items()}}

    # -- the node's store --------------------------------------------------------------------

    def on_message(self, envelope: Envelope, _topic: str) -> Iterable[Send] | None:
        key = envelope.res
        if envelope.src != "metamanager" or key is None or key.kind not in (kinds.DEVICE, kinds.DEVICEMODEL):
            return None
        if envelope.op not in (Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH):
            return None
        obj = None if envelope.op == Op.DELETE else envelope.body
        if obj is not None and not isinstance(obj, dict):
            self.bus.counters.inc("refused")
            log.warning("refused %s from MetaManager: its body is not an object", key)
            return None
        with self.lock:
            calls = self.manager.on_change(key.kind, f"{key.namespace}/{key.name}", obj)
            self._save_kept()
        self.calls.submit(calls)
        return None

    def _start_relist(self) -> None:
        threading.Thread(target=self._relist, name="relist", daemon=True).start()

    def _relist(self) -> None:
        for attempt in range(1, RELIST_ATTEMPTS + 1):
            with self.lock:
                self.manager.listing()
            try:
                objects = {**list_objects(self.bus, kinds.DEVICEMODEL), **list_objects(self.bus, kinds.DEVICE)}
            except (RequestTimeout, RequestError, PublishTimeout, BodyError) as exc:
                log.warning("could not list devices from MetaManager (%s; attempt %d of %d)", exc, attempt,
                            RELIST_ATTEMPTS)
                time.sleep(min(5.0, 0.5 * attempt))  # on this relist's own thread
                continue
            with self.lock:
                calls = self.manager.replace(objects)
                self._save_kept()
            self.calls.submit(calls)
            return
        log.error("gave up listing devices from MetaManager; they are listed again when it restarts")

    # -- mappers -------------------------------------------------------------------------------

    def to_devicetwin(self, requests: list[DeviceRequest]) -> None:
        """A mapper's report, to DeviceTwin as EventBus hands it devices' MQTT messages."""
        self.bus.publish(DEVICETWIN, self.bus.envelope(Group.TWIN, Op.UPDATE, body=requests_body(requests)),
                         timeout=10)

    def _registered(self, mapper: Mapper) -> None:
        """Called under the lock: the mapper is kept, on disk too (a restart must still reach it)."""
        self._failed_calls.pop(mapper.protocol, None)
        save_mappers(self.mappers_file, self.manager.mappers)

    def _address_of(self, protocol: str) -> str | None:
        with self.lock:
            mapper = self.manager.mappers.get(protocol)
        return mapper.address if mapper else None

    def _call_done(self, item: MapperCall, why: str | None) -> None:
        if why is None:
            self.bus.counters.inc("mapper_calls")
            return
        self.bus.counters.inc("mapper_call_errors")
        log.warning("%s on the %s mapper failed: %s", item.method, item.protocol, why)
        with self.lock:
            self._failed_calls[item.protocol] = f"{item.method}: {why}"


    def _call_refused(self, item: MapperCall, reason: str) -> None:
        """The mapper refused the version a call carried (_call_done has counted it): it keeps the one it runs,
        and so does the DMI."""
        with self.lock:
            calls = self.manager.mapper_refused(item, reason)
            self._save_kept()
        self.calls.submit(calls)

    def _save_kept(self) -> None:
        """Under the lock: the refusals and the versions kept in their place, on disk when they changed (rarely:
        the usual change is a status write, which changes neither)."""
        kept = self.manager.kept()
        if kept == self._kept:
            return
        try:
            save_json(self.kept_file, kept)
        except OSError as exc:  # a full disk: kept in memory, written with the next change
            log.warning("could not keep the refused versions in %s: %s", self.kept_file, exc)
            return
        self._kept = kept


def load_mappers(path: Path) -> dict[str, Mapper]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    out: dict[str, Mapper] = {}
    for item in data if isinstance(data, list) else []:
        try:
            mapper = Mapper.from_dict(item)
        except ValueError as exc:
            log.warning("ignoring a mapper in %s: %s", path, exc)
            continue
        out[mapper.protocol] = mapper
    return out


def save_mappers(path: Path, mappers: dict[str, Mapper]) -> None:
    save_json(path, [m.as_dict() for m in mappers.values()])


def save_json(path: Path, data: Any) -> None:
    """Written whole or not at all (a crash mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=1))
    part.replace(path)


def load_kept(path: Path) -> Any:
    """``DeviceManager.kept()`` as a previous run saved it; [] when there is none or it cannot be read."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return []
