"""DeviceManagerService's logic: the node's devices and models, the mappers registered, and what each call does.

No network here. Objects from the node's store come in (MetaManager's list and forwards), and the calls to
make on mappers come out (``MapperCall``); a mapper's request comes in as its protobuf message, and the
answer or the DeviceTwin requests to send come out, or a ``Refused`` that the server turns into a gRPC
error. A refused request changes nothing.

A new version of a Device or DeviceModel that cannot be made into its DMI message, or that the mapper refuses
(INVALID_ARGUMENT on RegisterDevice/UpdateDevice), is refused as a whole, as Kubernetes users expect of a bad
change: the DMI keeps the last version it accepted, the mapper keeps running it, and a mapper that registers
again is given that version, not the refused one and not nothing. The refusal is logged once (the same spec
comes back with every status write and is not refused again), counted, and shown in ``refusals``. The node's
store holds only the newest (refused) version, so the refusals and the versions kept in their place are also
kept on disk by the DMI process (``kept``/``restore``): a restarted DMI keeps giving mappers the last good one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from edge.dmi.convert import Unconvertible, device_message, model_message, model_name_of, node_of, protocol_of
from edge.dmi.settings import MAX_SOCKET_PATH
from edge.errors import EdgeError
from schemas import kinds, twin
from schemas.devicebus import DeviceRequest
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.names import is_namespace, is_object_name
from schemas.resource import ResourceKey

log = logging.getLogger(__name__)

MAX_TWINS_PER_REPORT = 1000
"""KubeEdge has no such bound; one report of a device's twins stays far below it."""
REQUEST_BYTES = twin.MAX_JSON_BYTES // 2
"""A report's twins go to DeviceTwin in requests of at most about this many bytes (it refuses more than
MAX_JSON_BYTES in one); each twin alone is far smaller."""
MAX_NAME = 253


class Refused(EdgeError):
    """A mapper's request that is refused, with the gRPC status it gets."""

    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Mapper:
    """A registered mapper, kept across restarts (KubeEdge keeps them in its store too)."""

    name: str
    protocol: str
    address: str
    """The Unix socket where the mapper serves DeviceMapperService."""
    version: str = ""
    api_version: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "protocol": self.protocol, "address": self.address, "version": self.version,
                "api_version": self.api_version}

    @classmethod
    def from_dict(cls, obj: Any) -> Mapper:
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("name", "protocol", "address")):
            raise ValueError("a mapper needs name, protocol and address strings")
        return cls(obj["name"], obj["protocol"], obj["address"], str(obj.get("version", "")),
                   str(obj.get("api_version", "")))


@dataclass(frozen=True)
class MapperCall:
    """One DeviceMapperService call to make on the mapper of ``protocol``."""

    protocol: str
    method: str
    """RegisterDevice, RemoveDevice, UpdateDevice, CreateDeviceModel, UpdateDeviceModel or RemoveDeviceModel."""
    request: Message
    device: str = ""
    """namespace/name of the Device a RegisterDevice or UpdateDevice carries ("" for the other calls)."""
    sent: dict[str, Any] | None = field(default=None, compare=False)
    """The Device object the request was made of."""
    previous: dict[str, Any] | None = field(default=None, compare=False)
    """The version the mapper ran before (None: it had none): what it keeps if it refuses ``sent``."""


@dataclass(frozen=True)
class Refusal:
    """A version of a Device or DeviceModel refused, and why; its spec, so that it is not refused again each time
    the node stores the same object with a new status."""

    spec: Any
    reason: str


@dataclass
class DeviceManager:
    node: str
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappers: dict[str, Mapper] = field(default_factory=dict)
    """By protocol: one mapper per protocol, the one that registered last (as in KubeEdge)."""
    listed: threading.Event = field(default_factory=threading.Event)
    """Set once the node's store has been read: registrations wait for it."""
    forwarded: set[tuple[str, str]] = field(default_factory=set)
    """(kind, namespace/name) forwarded by MetaManager since the list being read was asked for: newer than it."""
    refusals: dict[tuple[str, str], Refusal] = field(default_factory=dict)
    """(kind, namespace/name): the newest version refused while ``devices``/``models`` keep the last accepted."""
    elsewhere: dict[str, str] = field(default_factory=dict)
    """namespace/name -> the other node named by the ``spec.nodeName`` of a Device in this node's store. The cloud
    sends a node only its own devices (a moved one is deleted here), so this is a stale or wrong copy: like
    DeviceTwin, the DMI serves it as absent, and a report of it is refused with the node it is bound to."""
    count: Callable[[str], None] = field(default=lambda _name: None)
    """Counts ``devices_refused`` and ``models_refused``."""

    # -- the node's store ------------------------------------------------------------------

    def listing(self) -> None:
        """A list is about to be asked of MetaManager: what it forwards from now on is newer than that list."""
        self.forwarded.clear()

    def replace(self, objects: dict[ResourceKey, dict[str, Any]]) -> list[MapperCall]:
        """MetaManager's whole list. The first one only fills the cache (mappers get their devices when they
        register); a later one (MetaManager restarted, forwards may be lost) tells mappers what changed.
        An object forwarded while the list was on its way is newer than the list's, and kept."""
        first = not self.listed.is_set()
        calls: list[MapperCall] = []
        for kind, cache in ((kinds.DEVICEMODEL, self.models), (kinds.DEVICE, self.devices)):
            listed = {f"{k.namespace}/{k.name}": obj for k, obj in objects.items() if k.kind == kind}
            for ident in [i for i in cache if i not in listed and (kind, i) not in self.forwarded]:
                calls += self._apply(kind, ident, None)
            for gone in [r for r in self.refusals if r[0] == kind and r[1] not in listed and r not in self.forwarded]:
                del self.refusals[gone]
            for ident in [i for i in self.elsewhere if kind == kinds.DEVICE and i not in listed
                          and (kind, i) not in self.forwarded]:
                del self.elsewhere[ident]
            for ident, obj in listed.items():
                if (kind, ident) not in self.forwarded:
                    calls += self._apply(kind, ident, obj)
        self.listed.set()
        return [] if first else calls

    def on_change(self, kind: str, ident: str, obj: dict[str, Any] | None) -> list[MapperCall]:
        """A Device or DeviceModel stored (``obj``) or deleted (None): the mapper calls that follow."""
        self.forwarded.add((kind, ident))
        return self._apply(kind, ident, obj)

    def _apply(self, kind: str, ident: str, obj: dict[str, Any] | None) -> list[MapperCall]:
        if kind == kinds.DEVICE:
            return self._device_changed(ident, obj)
        if kind == kinds.DEVICEMODEL:
            return self._model_changed(ident, obj)
        return []

    def _device_changed(self, ident: str, obj: dict[str, Any] | None) -> list[MapperCall]:
        before = self.devices.get(ident)
        namespace, name = ident.split("/", 1)
        bound = node_of(obj) if obj is not None else ""
        if bound not in ("", self.node):
            if self.elsewhere.get(ident) != bound:
                log.warning("device %s in this node's store is bound to node %s: not served on node %s", ident, bound,
                            self.node)
            self.elsewhere[ident] = bound
            obj = None  # gone from this node, as DeviceTwin takes it (its mapper is told to remove it)
        else:
            self.elsewhere.pop(ident, None)
        if obj is None:
            self.devices.pop(ident, None)
            self.refusals.pop((kinds.DEVICE, ident), None)
            if before is None:
                return []
            return self._to(protocol_of(before), "RemoveDevice",
                            pb.RemoveDeviceRequest(deviceName=name, deviceNamespace=namespace))
        refused = self.refusals.get((kinds.DEVICE, ident))
        if refused is not None and refused.spec == obj.get("spec"):
            return []  # the refused version again, with a new status: the last accepted one stays
        if before is not None and before.get("spec") == obj.get("spec"):
            self.devices[ident] = obj  # a status change: nothing a mapper acts on
            self._accepted(kinds.DEVICE, ident)
            return []
        try:
            message = self._message(ident, obj)
        except Unconvertible as exc:
            self._refuse(kinds.DEVICE, ident, obj, str(exc), before is not None)
            return []
        self.devices[ident] = obj
        self._accepted(kinds.DEVICE, ident)
        calls: list[MapperCall] = []
        previous = before
        if before is not None and protocol_of(before) != protocol_of(obj):
            calls += self._to(protocol_of(before), "RemoveDevice",
                              pb.RemoveDeviceRequest(deviceName=name, deviceNamespace=namespace))
            before = None
        if before is None:
            return calls + self._to(protocol_of(obj), "RegisterDevice", pb.RegisterDeviceRequest(device=message),
                                    ident, obj, previous)
        return calls + self._to(protocol_of(obj), "UpdateDevice", pb.UpdateDeviceRequest(device=message),
                                ident, obj, previous)

    def mapper_refused(self, call: MapperCall, reason: str) -> list[MapperCall]:
        """The mapper answered INVALID_ARGUMENT to ``call``: it kept the version it ran, and so does the DMI (its
        answer to a later registration gives that version). The calls that follow: the device back to the
        previous protocol's mapper when the refused version had moved it to another protocol."""
        if call.method not in ("RegisterDevice", "UpdateDevice") or call.sent is None or not call.device:
            return []
        current = self.devices.get(call.device)
        if current is None or current.get("spec") != call.sent.get("spec"):
            return []  # deleted or changed again since: the refused version is no longer the newest
        previous = call.previous
        self._refuse(kinds.DEVICE, call.device, call.sent, f"the {call.protocol} mapper refused it: {reason}",
                     previous is not None)
        if previous is None:
            self.devices.pop(call.device)
            return []
        self.devices[call.device] = previous
        if protocol_of(previous) == protocol_of(call.sent):
            return []
        message = self._device(call.device)
        if message is None:
            return []
        return self._to(protocol_of(previous), "RegisterDevice", pb.RegisterDeviceRequest(device=message),
                        call.device, previous)

    def _model_changed(self, ident: str, obj: dict[str, Any] | None) -> list[MapperCall]:
        before = self.models.get(ident)
        namespace, name = ident.split("/", 1)
        if obj is None:
            self.models.pop(ident, None)
            self.refusals.pop((kinds.DEVICEMODEL, ident), None)
            if before is None:
                return []
            return self._to(_model_protocol(before), "RemoveDeviceModel",
                            pb.RemoveDeviceModelRequest(modelName=name, modelNamespace=namespace))
        refused = self.refusals.get((kinds.DEVICEMODEL, ident))
        if refused is not None and refused.spec == obj.get("spec"):
            return []
        if before is not None and before.get("spec") == obj.get("spec"):
            self.models[ident] = obj
            self._accepted(kinds.DEVICEMODEL, ident)
            return []
        try:
            message = model_message(obj)
        except Unconvertible as exc:
            self._refuse(kinds.DEVICEMODEL, ident, obj, str(exc), before is not None)
            return []
        self.models[ident] = obj
        self._accepted(kinds.DEVICEMODEL, ident)
        if before is None:
            return self._to(_model_protocol(obj), "CreateDeviceModel", pb.CreateDeviceModelRequest(model=message))
        return self._to(_model_protocol(obj), "UpdateDeviceModel", pb.UpdateDeviceModelRequest(model=message))

    # -- across restarts ---------------------------------------------------------------------

    def kept(self) -> list[dict[str, Any]]:
        """What a restart must not lose: each refused version's spec and reason, and the version accepted before
        it (None: none was), which mappers run in its place. The node's store holds only the newest version, the
        refused one: without this, a restarted DMI would take it from the list and give it to the mapper."""
        out: list[dict[str, Any]] = []
        for (kind, ident), refusal in sorted(self.refusals.items()):
            cache = self.devices if kind == kinds.DEVICE else self.models
            out.append({"kind": kind, "ident": ident, "spec": refusal.spec, "reason": refusal.reason,
                        "kept": cache.get(ident)})
        return out

    def restore(self, saved: Any) -> int:
        """``kept()`` of a previous run, before the first list: the list's refused versions are then refused
        again (unchanged specs, no new refusal counted or logged) and the versions kept stay what mappers get;
        a version changed meanwhile is taken as any change is, and one deleted meanwhile goes with the list.
        Entries that are not what ``kept()`` writes are skipped with a warning; returns how many were taken."""
        taken = 0
        for item in saved if isinstance(saved, list) else []:
            entry = _kept_entry(item)
            if entry is None:
                log.warning("ignoring a kept version that is not one: %.200r", item)
                continue
            kind, ident, reason, kept = entry
            self.refusals[(kind, ident)] = Refusal(item.get("spec"), reason)
            if kept is not None:
                (self.devices if kind == kinds.DEVICE else self.models)[ident] = kept
            taken += 1
        return taken

    def _refuse(self, kind: str, ident: str, obj: dict[str, Any], reason: str, kept: bool) -> None:
        self.refusals[(kind, ident)] = Refusal(obj.get("spec"), reason)
        self.count(f"{kind}s_refused")
        what = "device model" if kind == kinds.DEVICEMODEL else "device"
        keeps = "its mappers keep the last version accepted" if kept else "it is not given to its mapper"
        log.warning("refused this version of %s %s (%s): %s", what, ident, keeps, reason)

    def _accepted(self, kind: str, ident: str) -> None:
        if self.refusals.pop((kind, ident), None) is not None:
            log.info("%s %s: a version is accepted again", kind, ident)

    def _to(self, protocol: str, method: str, request: Message, device: str = "", sent: dict[str, Any] | None = None,
            previous: dict[str, Any] | None = None) -> list[MapperCall]:
        """The call, to the protocol's mapper if one is registered; ``device``, ``sent`` and ``previous`` for a
        RegisterDevice or UpdateDevice (MapperCall)."""
        return [MapperCall(protocol, method, request, device, sent, previous)] if protocol in self.mappers else []

    def _message(self, ident: str, obj: dict[str, Any]) -> pb.Device:
        namespace = ident.split("/", 1)[0]
        return device_message(obj, self.models.get(f"{namespace}/{model_name_of(obj)}"))

    def _device(self, ident: str) -> pb.Device | None:
        try:
            return self._message(ident, self.devices[ident])
        except Unconvertible as exc:  # its model changed since it was accepted
            log.warning("device %s is not sent to its mapper: %s", ident, exc)
            return None

    # -- mappers' requests -----------------------------------------------------------------

    def register(self, request: pb.MapperRegisterRequest) -> tuple[Mapper, pb.MapperRegisterResponse]:
        """The mapper to keep, and its answer: the devices of its protocol on this node, with their models."""
        info = request.mapper
        if not request.HasField("mapper"):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "MapperRegisterRequest.mapper is missing")
        if not info.protocol:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"mapper {info.name!r} names no protocol")
        if not info.name or len(info.name) > MAX_NAME or len(info.protocol) > MAX_NAME:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "mapper name and protocol must be 1 to 253 characters")
        address = _socket_path(info.address)
        mapper = Mapper(info.name, info.protocol, address, info.version, info.api_version)
        answer = pb.MapperRegisterResponse()
        if request.withData:
            models: set[str] = set()
            for ident, obj in sorted(self.devices.items()):
                if protocol_of(obj) != info.protocol:
                    continue
                message = self._device(ident)
                if message is None:
                    continue
                answer.deviceList.append(message)
                model_id = f"{message.namespace}/{message.spec.deviceModelReference}"
                model = self.models.get(model_id)
                if model is not None and model_id not in models:
                    models.add(model_id)
                    try:
                        answer.modelList.append(model_message(model))
                    except Unconvertible as exc:
                        log.warning("device model %s is not sent to mapper %s: %s", model_id, info.name, exc)
        self.mappers[info.protocol] = mapper
        return mapper, answer

    def report_status(self, request: pb.ReportDeviceStatusRequest) -> list[DeviceRequest]:
        """A mapper's twins as DeviceTwin's requests: one twin/update for the whole report (a bad twin is still
        refused alone by DeviceTwin, which then applies the report twin by twin: DeviceTwin.on_report), split
        only to stay under DeviceTwin's size limit or to keep a property named twice in the order sent. Only
        the reported value is taken (see the note)."""
        namespace, name = self._member(request.deviceNamespace, request.deviceName)
        ident = f"{namespace}/{name}"
        twins = request.reportedDevice.twins
        if not twins:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"the report of device {ident} has no twins")
        if len(twins) > MAX_TWINS_PER_REPORT:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the report of device {ident} has {len(twins)} twins; at most {MAX_TWINS_PER_REPORT}")
        now = twin.now_ms()
        chunks: list[dict[str, Any]] = [{}]
        size = 0
        for index, reported in enumerate(twins):
            if not reported.HasField("reported"):
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                              f"twins[{index}] ({reported.propertyName!r}) of device {ident} has no reported value")
            entry = {"actual": {"value": reported.reported.value}}
            one = self._checked({"event_id": "", "timestamp": now, "twin": {reported.propertyName: entry}},
                                ident, index)
            if chunks[-1] and (reported.propertyName in chunks[-1] or size + len(one) > REQUEST_BYTES):
                chunks.append({})
                size = 0
            chunks[-1][reported.propertyName] = entry
            size += len(one)
        return [DeviceRequest(namespace, name, "twin/update",
                              json.dumps({"event_id": "", "timestamp": now, "twin": chunk}).encode())
                for chunk in chunks]

    def report_states(self, request: pb.ReportDeviceStatesRequest) -> DeviceRequest:
        namespace, name = self._member(request.deviceNamespace, request.deviceName)
        ident = f"{namespace}/{name}"
        payload = {"event_id": "", "timestamp": twin.now_ms(), "state": request.state}
        data = json.dumps(payload).encode()
        try:
            twin.parse_state(twin.loads(data))
        except twin.TwinError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"device {ident}: {exc.reason}") from None
        return DeviceRequest(namespace, name, "state/update", data)

    def _member(self, namespace: str, name: str) -> tuple[str, str]:
        """The device's namespace and name, if it is one of this node's and its protocol's mapper registered."""
        namespace = namespace or "default"  # KubeEdge's older mappers send no namespace
        if not is_namespace(namespace) or not is_object_name(name):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{namespace[:64]!r}/{name[:64]!r} is not a device's namespace and name")
        ident = f"{namespace}/{name}"
        device = self.devices.get(ident)
        refused = self.refusals.get((kinds.DEVICE, ident))
        if device is None and refused is not None:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"device {ident} on node {self.node} was refused, and no version of it is served: "
                          f"{refused.reason}")
        if device is None and ident in self.elsewhere:
            raise Refused(grpc.StatusCode.NOT_FOUND,
                          f"device {ident} is bound to node {self.elsewhere[ident]}, not a member of node {self.node}")
        if device is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"device {ident} is not a member of node {self.node}")
        if protocol_of(device) not in self.mappers:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"device {ident} speaks {protocol_of(device)!r}, and no mapper of that protocol "
                          f"is registered on node {self.node}")
        return namespace, name

    @staticmethod
    def _checked(payload: dict[str, Any], ident: str, index: int) -> bytes:
        data = json.dumps(payload).encode()
        try:
            # names and the characters of every value (parse_update checks them, as KubeEdge's edge does); the
            # type is DeviceTwin's to check (it knows the Device and the model)
            twin.parse_update(twin.loads(data))
        except twin.TwinError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, f"twins[{index}] of device {ident}: {exc.reason}") from None
        return data


def _kept_entry(item: Any) -> tuple[str, str, str, dict[str, Any] | None] | None:
    """(kind, namespace/name, reason, version kept) of one ``kept()`` entry, or None if it is not one."""
    if not isinstance(item, dict):
        return None
    kind, ident, reason, kept = item.get("kind"), item.get("ident"), item.get("reason"), item.get("kept")
    if kind not in (kinds.DEVICE, kinds.DEVICEMODEL) or not isinstance(ident, str) or ident.count("/") != 1:
        return None
    if not isinstance(reason, str) or not (kept is None or isinstance(kept, dict)):
        return None
    return str(kind), ident, reason, kept


def _model_protocol(model: dict[str, Any]) -> str:
    spec = model.get("spec")
    protocol = spec.get("protocol") if isinstance(spec, dict) else None
    return protocol if isinstance(protocol, str) else ""


def _socket_path(address: bytes) -> str:
    try:
        text = address.decode()
    except UnicodeDecodeError:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "the mapper's address is not UTF-8") from None
    path = text.removeprefix("unix://")
    if not path.startswith("/") or len(path.encode()) > MAX_SOCKET_PATH or "\0" in path:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                      f"the mapper's address {text[:120]!r} is not the absolute path of a Unix socket "
                      f"(at most {MAX_SOCKET_PATH} bytes)")
    return path
