"""DeviceTwin's logic: device requests and cloud objects in, store changes and JSON publications out.

Devices speak KubeEdge's JSON (schemas/twin.py); the cloud sends Device and
DeviceModel objects. The delta goes out retained, so a device that connects later
gets it at once. It is never cleared with an empty message while the device is a member (a KubeEdge
client reads every delta as JSON): once the device reports the desired values nothing is sent, as
KubeEdge sends nothing, and the retained one names targets that are still the expected values. While a
target is outstanding, each update a device makes is followed by the delta, as KubeEdge follows it.
What devices report is collected per device and sent up as one coalesced status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.devicetwin.reporting import CloudReports
from edge.devicetwin.store import Device, ReportPolicy, Twin, TwinStore
from schemas import topics, twin
from schemas.devicebus import Publication
from schemas.devices import Device as DeviceObject
from schemas.devices import DeviceModel, DeviceProperty
from schemas.fields import BodyError
from schemas.kinds import DEVICE, DEVICEMODEL, DEVICESTATUS
from schemas.resource import ResourceKey
from schemas.timefmt import rfc3339
from schemas.twin import TwinError

log = logging.getLogger(__name__)

ONLINE_STATES = ("online", "ok")


def _loads(payload: bytes, reason: Callable[[str], str]) -> dict[str, Any]:
    """The request's JSON object, or TwinError(400) with ``reason`` of why not (KubeEdge's wording)."""
    try:
        return twin.loads(payload)
    except TwinError as exc:
        raise TwinError(twin.BAD_REQUEST, reason(exc.reason)) from None


def shown(t: Twin) -> dict[str, Any]:
    """A twin property as devices see it (KubeEdge's MsgTwin without versions): not to be changed."""
    return t.shown()


@dataclass
class DeviceTwin:
    store: TwinStore
    node: str
    dirty: set[str] = field(default_factory=set)  # device ids with news for the cloud
    reports: CloudReports = field(default_factory=CloudReports)
    _last_delta: dict[str, Any] = field(default_factory=dict)  # each device's differing values, computed last
    _retained: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The ``delta`` of each device's retained delta on the broker, as far as known (not after a restart)."""
    refused: int = 0
    _model_types_read: dict[str, tuple[dict[str, Any], dict[str, str]]] = field(default_factory=dict)
    """Per model id: the stored model object last read, and its twin types (``_types_of``)."""
    """Requests answered with an error and cloud objects turned down, since the last ``take_refused``."""

    def take_refused(self) -> int:
        count, self.refused = self.refused, 0
        return count

    # -- requests from devices --------------------------------------------------------------

    def on_device(self, namespace: str, name: str, request: str, payload: bytes) -> list[Publication]:
        """One request from a device: the answers to publish (an error answer when it is refused).

        Checked in KubeEdge's order, so that a request wrong in two ways gets the same reason: the JSON
        (and, for an update, every name and value in it) first, then whether the device is a member."""
        answer_topic = topics.device(namespace, name, request + "/result")
        device_id = f"{namespace}/{name}"
        event_id = ""
        try:
            if request == "twin/update":
                obj = _loads(payload, lambda _why: twin.REASON_UNMARSHAL)
                # KubeEdge answers what its UnmarshalDeviceTwinUpdate refuses (no twin, a bad name or value)
                # with an empty event_id: the request's is known only once the body is read.
                changes = twin.parse_update(obj)
                event_id = twin.event_id_of(obj)
                return self._update(self._member(device_id, twin.REASON_NO_DEVICE), changes, event_id)
            if request == "twin/get":
                obj = _loads(payload, lambda why: twin.get_unmarshal("twin", payload, why))
                event_id = twin.event_id_of(obj)
                device = self._member(device_id, twin.get_not_found(device_id))
                twins = self.store.twins(device.id)
                return [Publication(answer_topic, twin.get_result(event_id, {k: shown(t) for k, t in twins.items()}))]
            if request == "state/update":
                obj = twin.loads(payload)
                event_id = twin.event_id_of(obj)
                device = self._member(device_id, f"device {device_id} is not a member of node {self.node}")
                return self._state(device, obj)
            raise TwinError(twin.BAD_REQUEST, f"{request} is not a device request")
        except TwinError as exc:
            self.refused += 1
            return [Publication(answer_topic, twin.error(event_id, exc.code, exc.reason))]

    def on_report(self, namespace: str, name: str, payload: bytes) -> list[Publication]:
        """A mapper's report from the DMI: its twins in one twin/update, applied at once when all are taken.
        When DeviceTwin refuses it (a value of the wrong type, say), each twin is applied as a request of its
        own instead, as the DMI used to send them: the bad twin is refused alone, with the answer it got alone,
        and the report's other twins are kept. (KubeEdge's DMI sends one request per twin; one per report
        costs DeviceTwin about a fifth of the time per value, and this keeps each twin's fate.)

        A device's own MQTT twin/update is not this: KubeEdge takes or refuses it whole (``on_device``)."""
        try:
            obj = twin.loads(payload)
        except TwinError:
            return self.on_device(namespace, name, "twin/update", payload)  # refused as it always was
        twins = obj.get("twin")
        if not isinstance(twins, dict) or len(twins) < 2:
            return self.on_device(namespace, name, "twin/update", payload)
        try:
            changes = twin.parse_update(obj)
            device = self._member(f"{namespace}/{name}", twin.REASON_NO_DEVICE)
            return self._update(device, changes, twin.event_id_of(obj))  # checks every twin before it stores one
        except TwinError:
            out: list[Publication] = []
            for prop, value in twins.items():
                one = json.dumps({**obj, "twin": {prop: value}}).encode()
                out += self.on_device(namespace, name, "twin/update", one)
            return out

    def store_failed(self, namespace: str, name: str, request: str, payload: bytes, reason: str) -> list[Publication]:
        """The answer to a request whose batch could not be saved (its transaction rolled back): for a
        twin/update, 500 with the store's error, as KubeEdge answers when its database write fails; a request
        it refuses before writing (unreadable JSON, a bad name or value) gets that 400 as usual. Other requests
        get no answer, as from KubeEdge (whose state and get answers do not depend on a write)."""
        if request != "twin/update":
            return []
        topic = topics.device(namespace, name, "twin/update/result")
        try:
            obj = _loads(payload, lambda _why: twin.REASON_UNMARSHAL)
            twin.parse_update(obj)
        except TwinError as exc:
            return [Publication(topic, twin.error("", exc.code, exc.reason))]
        return [Publication(topic, twin.error(twin.event_id_of(obj), twin.INTERNAL, reason))]

    def forget_deltas(self) -> None:
        """After a batch was rolled back, what the broker retains is not known: each device's next change says
        its delta again."""
        self._last_delta.clear()
        self._retained.clear()

    def _member(self, device_id: str, reason: str) -> Device:
        device = self.store.device(device_id)
        if device is None:
            raise TwinError(twin.NOT_FOUND, reason)
        return device

    def _update(self, device: Device, changes: dict[str, twin.PropUpdate | None], event_id: str) -> list[Publication]:
        current = self.store.twins(device.id)
        model_types = self._model_types(device)
        now = twin.now_ms()
        changed: dict[str, tuple[Any, Any]] = {}
        results: dict[str, Any] = {}
        writes: list[Twin] = []
        deletes: list[str] = []
        for prop, change in changes.items():  # validate everything before storing anything
            before = current.get(prop)
            if change is None:
                if before is None:
                    raise TwinError(twin.BAD_REQUEST, "the request body is wrong")  # KubeEdge's words
                if not before.optional:
                    raise TwinError(twin.BAD_REQUEST, f"{prop}: the property is not optional and cannot be deleted")
                deletes.append(prop)
                changed[prop] = (shown(before), None)
                results[prop] = None
                continue
            after = self._changed(prop, before, change, model_types.get(prop), now)
            if after is None:
                continue  # nothing to change: KubeEdge leaves it out of the result and the document
            writes.append(after)
            shown_after = after.shown()
            changed[prop] = (before.shown() if before else None, shown_after)
            if before is None or (change.actual and change.expected is None and after.expected is None):
                # What the result says of the property is then what it shows now: the same dict, built once.
                results[prop] = shown_after
            elif change.actual is None and change.expected is None:
                # Only made required: KubeEdge's dealTwinCompare sets the result's metadata only with a value.
                results[prop] = {"optional": after.optional}
            else:
                results[prop] = twin.entry(change.expected, now, change.actual, now, after.kind, after.optional,
                                           set_only=True)
        self.store.put_twins(device.id, writes)
        for t in writes:
            current[t.prop] = t
        for prop in deletes:
            self.store.remove_twin(device.id, prop)
            current.pop(prop, None)
        base_topic = (device.namespace, device.name)
        # The answers to an update hold strings, integers, booleans and None (the twins' shown entries): no float.
        out = [Publication(topics.device(*base_topic, "twin/update/result"), twin.result(event_id, results),
                           floats=False)]
        if changed:
            self.dirty.add(device.id)
            out.append(Publication(topics.device(*base_topic, "twin/update/document"),
                                   twin.document(event_id, changed), floats=False))
        return out + self._delta(device, current, after_update=True)

    @staticmethod
    def _changed(prop: str, before: Twin | None, change: twin.PropUpdate, model_type: str | None,
                 now: int) -> Twin | None:
        """The property after ``change`` (None: unchanged), its values checked against its type.

        An existing property keeps its type (KubeEdge ignores a type the device sends for it); a new one
        takes the DeviceModel's, else the device's, else string. A device may name only the types KubeEdge's
        edge knows: its dealTwinAdd refuses a value of any other type ("the value type is not allowed"), and a
        twin created without one could never take a value there (here it is refused at once)."""
        if before is None:
            kind = model_type or (change.kind if change.kind is not None else "string")
            if kind not in (twin.TYPES if model_type else twin.EDGE_TYPES) - {"deleted"}:
                raise TwinError(twin.BAD_REQUEST, twin.REASON_TYPE)
            base = Twin(prop, kind=kind, optional=True if change.optional is None else change.optional)
        else:
            base = before
        expected, actual = change.expected, change.actual
        if expected is not None:  # expected first, as KubeEdge checks them
            twin.check_value(expected, base.kind)
        if actual is not None:
            twin.check_value(actual, base.kind)
        # One copy of the twin with every change (each copy costs a dataclass replace).
        fields: dict[str, Any] = {} if actual is None else {
            "actual": actual, "actual_ts": now, "edge_version": base.edge_version + 1}
        if actual is not None and base.expected is not None and actual == base.expected:
            # Compared with the expected value before this change sets a new one, as the actual side comes first.
            fields["acked_version"] = base.cloud_version
        if before is not None and change.optional is False and before.optional:
            fields["optional"] = False  # KubeEdge lets a device make an optional property required only
        if expected is not None:
            fields["expected"] = expected
            fields["expected_ts"] = now
        if before is not None and actual is None and before.holds(fields):  # a new actual bumps edge_version
            return None
        return base.replaced(fields) if fields else base

    def _state(self, device: Device, obj: dict[str, Any]) -> list[Publication]:
        sent = twin.parse_state(obj)
        online = sent.lower() in ONLINE_STATES
        last_online = rfc3339(twin.now_ms() / 1000) if online else device.last_online
        # Stored as sent, as KubeEdge stores it (membership/get shows it so); compared lower-cased.
        self.store.set_state(device.id, sent, last_online)
        self.dirty.add(device.id)
        # KubeEdge answers with the state as sent and a last online time only when the device is online now.
        return [Publication(topics.device(device.namespace, device.name, "state/update/result"),
                            twin.state_result(device.name, sent, last_online if online else ""))]

    def membership_get(self, payload: bytes) -> list[Publication]:
        topic = topics.membership(self.node, "get/result")
        try:
            event_id = twin.event_id_of(_loads(payload, lambda why: twin.get_unmarshal("get membership", payload,
                                                                                       why)))
        except TwinError as exc:
            self.refused += 1
            return [Publication(topic, twin.error("", exc.code, exc.reason))]
        # KubeEdge writes an empty last online time when a device goes offline, so it shows none then; ours
        # keeps the time for the Device status and leaves it out here.
        devices = [twin.membership_device(d.id, d.name, d.description, d.state,
                                          d.last_online if d.state.lower() in ONLINE_STATES else "")
                   for d in self.store.devices()]
        return [Publication(topic, twin.membership_get_result(event_id, devices))]

    def _delta(self, device: Device, twins: dict[str, Twin], stale: bool = False,
               after_update: bool = False) -> list[Publication]:
        """The retained delta: set while some expected value differs from the actual one, cleared after.

        ``after_update``: a device's update was taken; then, as KubeEdge's DealDeviceTwin, the delta goes out
        whenever something differs (a device may count on one after each of its updates while a target is
        outstanding). Otherwise it is published only when it changes (what differs, not when). Either way a
        device reporting readings with no desired value outstanding costs no delta traffic at all.

        ``stale``: what a delta shows changed though what differs did not (a twin's type changed, or a desired
        value was withdrawn), so a delta still set goes out again (a device that connects later would read the
        old type or target in it). A withdrawn target is not named in the delta: KubeEdge's delta is a map of
        strings, and a null would read as "".

        When nothing differs any more nothing is sent, as by KubeEdge, while the retained delta still names only
        current expected values (a device that connects later re-applies what it has). When it names a target
        that was withdrawn or changed meanwhile, or is not known (after a restart), it is replaced by one with
        an empty ``delta``: JSON, unlike the zero-length message that would clear it."""
        # Only twins with an expected value can be in a delta (twin.delta): the others are not shown at all.
        shown_twins = {k: shown(t) for k, t in twins.items() if t.expected}
        payload = twin.delta(shown_twins) if shown_twins else None  # none expected (a device only reporting)
        if payload is None:
            self._last_delta[device.id] = None
            retained = self._retained.get(device.id)
            if retained is not None and (not retained or (self._still_holds(retained, twins) and not stale)):
                return []
            payload = twin.delta(shown_twins, settled=True)
            assert payload is not None
        else:
            differing = payload["delta"]
            if self._last_delta.get(device.id) == differing and not stale and not after_update:
                return []
            self._last_delta[device.id] = differing
        self._retained[device.id] = payload["delta"]
        topic = topics.device(device.namespace, device.name, "twin/update/delta")
        return [Publication(topic, payload, retain=True, floats=False)]  # shown entries and strings only

    @staticmethod
    def _still_holds(retained: dict[str, Any], twins: dict[str, Twin]) -> bool:
        """Whether every target of a retained ``delta`` is the property's expected value now (None: it has none)."""
        return all((twins[k].expected if k in twins else None) == v for k, v in retained.items())

    def _model_types(self, device: Device) -> dict[str, str]:
        return self._types_of(device.namespace, device.model)

    def _types_of(self, namespace: str, model_name: str | None) -> dict[str, str]:
        """Twin type per property of a DeviceModel in the store ({} when it has not arrived); read once per
        version of the model (the store gives the same object until the model is written again)."""
        model = self.store.model(f"{namespace}/{model_name}") if model_name else None
        if model is None:
            return {}
        key = f"{namespace}/{model_name}"
        read = self._model_types_read.get(key)
        if read is not None and read[0] is model:
            return read[1]
        types = {name: twin.MODEL_TYPES.get(prop.type, "string")
                 for name, prop in DeviceModel.view(model).properties.items()}
        self._model_types_read[key] = (model, types)
        return types

    # -- objects from the cloud (forwarded by MetaManager after its commit) ----------------

    def on_cloud(self, key: ResourceKey, obj: Any) -> list[Publication]:
        """A Device or DeviceModel from the cloud (None: deleted). One that does not parse is refused (counted)
        and changes nothing."""
        if key.kind not in (DEVICE, DEVICEMODEL):
            return []
        try:
            if key.kind == DEVICEMODEL:
                if obj is not None:
                    DeviceModel.parse(obj)
                self.store.put_model(f"{key.namespace}/{key.name}", obj)
                return self._model_arrived(str(key.namespace), key.name)
            return self._on_device(key, None if obj is None else DeviceObject.parse(obj))
        except BodyError as exc:
            self.refused += 1
            log.warning("refused %s from the cloud: %s", key, exc)
            return []

    def _model_arrived(self, namespace: str, name: str) -> list[Publication]:
        """Re-type the twins of the model's devices: a Device may arrive before its model, or the model change."""
        types = self._types_of(namespace, name)
        out: list[Publication] = []
        for device in self.store.devices():
            if device.namespace == namespace and device.model == name:
                twins = self.store.twins(device.id)
                if self._retype(device.id, twins, types):
                    out += self._delta(device, twins, stale=True)
        return out

    def _retype(self, device_id: str, twins: dict[str, Twin], types: dict[str, str]) -> bool:
        """Give each twin its type: the Device's ``desired.metadata.type``, else the DeviceModel's, else the one
        it has (the device's own, or string). Whether any changed."""
        changed = False
        for name, t in twins.items():
            kind = t.declared_kind or types.get(name) or t.kind
            if kind != t.kind:
                twins[name] = t.but(kind=kind)
                self.store.put_twin(device_id, twins[name])
                changed = True
        return changed

    def _on_device(self, key: ResourceKey, obj: DeviceObject | None) -> list[Publication]:
        device_id = f"{key.namespace}/{key.name}"
        existing = self.store.device(device_id)
        if obj is None or obj.node_name not in (None, self.node):
            if existing is None:
                return []
            # KubeEdge's edge announces the device as the cloud named it: id, name and description only.
            return self._remove(existing, twin.membership_device(device_id, existing.name, existing.description))
        self._check_desired(obj, self._types_of(str(key.namespace), obj.model))
        # A new device has no state until it reports one (KubeEdge leaves it out of membership answers).
        device = Device(device_id, str(key.namespace), key.name, description=obj.description, model=obj.model or "",
                        state=existing.state if existing else "",
                        last_online=existing.last_online if existing else "",
                        report=ReportPolicy(obj.state_report, {p.name: p.report for p in obj.properties}))
        self.store.put_device(device)
        if existing is None:
            self._retained[device_id] = {}  # nothing retained for a device new to the node (removal clears it)
        if existing is not None and existing.report != device.report:
            self.dirty.add(device_id)  # what the cloud may see changed: send the status it allows now
        rv = obj.meta.resource_version or ""
        # ASCII digits that fit SQLite's INTEGER: "²".isdigit() is true but int("²") raises, and a larger
        # number does not fit the store's column; any other version counts as 0.
        version = int(rv) if rv.isascii() and rv.isdigit() and int(rv) < 2**63 else 0
        twins, removed, retyped = self._apply_desired(device, obj.properties, version)
        out: list[Publication] = []
        if existing is None:
            added = twin.membership_device(device_id, device.name, device.description)
            out.append(Publication(topics.membership(self.node, "updated"), twin.membership_updated([added], [])))
        return out + self._delta(device, twins, stale=retyped or bool(removed))

    def _remove(self, existing: Device, gone: dict[str, Any]) -> list[Publication]:
        """Drop a device and announce it as ``gone`` in membership/updated."""
        self.store.remove_device(existing.id)
        self.dirty.discard(existing.id)
        self.reports.forget(existing.id)
        # Its retained delta is cleared (below): a Device created again under the name starts from nothing.
        self._last_delta.pop(existing.id, None)
        self._retained.pop(existing.id, None)
        return [Publication(topics.membership(self.node, "updated"), twin.membership_updated([], [gone])),
                Publication(topics.device(existing.namespace, existing.name, "twin/update/delta"), None,
                            retain=True)]

    @staticmethod
    def _check_desired(obj: DeviceObject, types: dict[str, str]) -> None:
        """Refuse a Device whose desired value is not of its property's type (the Device's, else the model's)."""
        for index, prop in enumerate(obj.properties):
            kind = prop.desired_type or types.get(prop.name) or "string"
            if prop.desired is None:
                continue
            why = twin.type_error(prop.desired, kind)
            if why is not None:
                raise BodyError(f"body.spec.properties[{index}].desired.value", f"is {prop.desired[:40]!r}, not "
                                                                                 f"of type {kind}: {why}")

    def replace_devices(self, objects: dict[ResourceKey, dict[str, Any]]) -> list[Publication]:
        """Take MetaManager's full list: apply every model and device, drop the devices it no longer has."""
        out: list[Publication] = []
        for key, obj in sorted(objects.items(), key=lambda kv: kv[0].kind != DEVICEMODEL):
            out += self.on_cloud(key, obj)
        listed = {f"{k.namespace}/{k.name}" for k in objects if k.kind == DEVICE}
        for device in self.store.devices():
            if device.id not in listed:
                # KubeEdge's membership detail (its full resync) announces such a device by its id alone.
                out += self._remove(device, {"id": device.id})
        return out

    def _apply_desired(self, device: Device, properties: tuple[DeviceProperty, ...],
                       version: int) -> tuple[dict[str, Twin], tuple[str, ...], bool]:
        twins = self.store.twins(device.id)
        now = twin.now_ms()
        declared = {prop.name: prop.desired_type or "" for prop in properties}
        for name, t in list(twins.items()):
            if t.declared_kind != declared.get(name, ""):
                twins[name] = t.but(declared_kind=declared.get(name, ""))
                self.store.put_twin(device.id, twins[name])
        for prop in properties:
            # A type without a value still makes the twin, so that a device reading it sees the type.
            if prop.name not in twins and prop.desired is None and prop.desired_type:
                twins[prop.name] = Twin(prop.name, optional=False, declared_kind=prop.desired_type)
                self.store.put_twin(device.id, twins[prop.name])
        wanted = {prop.name: prop.desired for prop in properties if prop.desired is not None}
        for name, value in wanted.items():
            before = twins.get(name) or Twin(name, optional=False, declared_kind=declared[name])
            if before.expected != value or not before.desired_by_cloud:
                after = before.but(expected=value, expected_ts=now, cloud_version=version, desired_by_cloud=True)
                if after.actual == value:
                    after = after.but(acked_version=version)
                self.store.put_twin(device.id, after)
                twins[name] = after
        retyped = self._retype(device.id, twins, self._model_types(device))
        removed = []
        for name, t in list(twins.items()):
            if t.desired_by_cloud and name not in wanted:
                removed.append(name)
                after = t.but(expected=None, expected_ts=0, desired_by_cloud=False)
                self.store.put_twin(device.id, after)
                twins[name] = after
        return twins, tuple(removed), retyped

    # -- news for the cloud ----------------------------------------------------------------

    def take_reports(self) -> list[tuple[ResourceKey, dict[str, Any]]]:
        """The status of every device that changed since the last call, as the Device status wants it (what its
        reportToCloud and reportCycle let through; a device whose newer value waits for its cycle stays dirty)."""
        reports = []
        waiting = set()
        for device_id in sorted(self.dirty):
            device = self.store.device(device_id)
            if device is None:
                continue
            status, pending = self.reports.status(device, self.store.twins(device_id).values())
            if pending:
                waiting.add(device_id)
            if self.reports.is_new(device_id, status):  # not when all its news wait for their cycle
                reports.append((ResourceKey(device.namespace, DEVICESTATUS, device.name), status))
        self.dirty = waiting
        return reports

    def report_all(self) -> None:
        """Every device's status to the cloud again at the next report (what went up may have been lost)."""
        self.reports.send_again()
        self.dirty.update(device.id for device in self.store.devices())
