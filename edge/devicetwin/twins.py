"""DeviceTwin's logic: device requests and cloud objects in, store changes and JSON publications out.

Devices speak KubeEdge's JSON (schemas/twin.py); the cloud sends Device and
DeviceModel objects. The delta goes out retained, so a device that connects later
gets it at once, and is cleared once the device reports the desired values.
What devices report is collected per device and sent up as one coalesced status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from edge.devicetwin.store import Device, Twin, TwinStore
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


def shown(t: Twin) -> dict[str, Any]:
    """A twin property as devices see it, plus the desired version they last confirmed (beyond KubeEdge)."""
    out = twin.entry(t.expected, t.expected_ts, t.actual, t.actual_ts, t.kind, t.optional)
    if t.desired_by_cloud:
        out["desired_version"] = t.cloud_version
        out["observed_desired_version"] = t.acked_version
    return out


@dataclass
class DeviceTwin:
    store: TwinStore
    node: str
    dirty: set[str] = field(default_factory=set)  # device ids with news for the cloud
    _last_delta: dict[str, Any] = field(default_factory=dict)  # what each device's retained delta says now
    refused: int = 0
    """Requests answered with an error and cloud objects turned down, since the last ``take_refused``."""

    def take_refused(self) -> int:
        count, self.refused = self.refused, 0
        return count

    # -- requests from devices --------------------------------------------------------------

    def on_device(self, namespace: str, name: str, request: str, payload: bytes) -> list[Publication]:
        """One request from a device: the answers to publish (an error answer when it is refused)."""
        answer_topic = topics.device(namespace, name, request + "/result")
        event_id = ""
        try:
            obj = twin.loads(payload)
            event_id = twin.event_id_of(obj)
            device = self.store.device(f"{namespace}/{name}")
            if device is None:
                raise TwinError(twin.NOT_FOUND, f"device {namespace}/{name} is not a member of node {self.node}")
            if request == "twin/update":
                return self._update(device, obj, event_id)
            if request == "twin/get":
                twins = self.store.twins(device.id)
                return [Publication(answer_topic, twin.get_result(event_id, {k: shown(t) for k, t in twins.items()}))]
            if request == "state/update":
                return self._state(device, obj)
            raise TwinError(twin.BAD_REQUEST, f"{request} is not a device request")
        except TwinError as exc:
            self.refused += 1
            return [Publication(answer_topic, twin.error(event_id, exc.code, exc.reason), qos=0)]

    def _update(self, device: Device, obj: dict[str, Any], event_id: str) -> list[Publication]:
        changes = twin.parse_update(obj)
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
                    raise TwinError(twin.BAD_REQUEST, f"{prop}: there is no such property to delete")
                if not before.optional:
                    raise TwinError(twin.BAD_REQUEST, f"{prop}: the property is not optional and cannot be deleted")
                deletes.append(prop)
                changed[prop] = (shown(before), None)
                results[prop] = None
                continue
            kind = (before.kind if before else None) or model_types.get(prop) or change.kind or "string"
            base = before or Twin(prop, kind=kind, optional=True if change.optional is None else change.optional)
            after = base
            if change.actual is not None:
                after = after.but(actual=twin.check_value(change.actual, kind, prop), actual_ts=now,
                                  edge_version=after.edge_version + 1)
                if after.expected is not None and after.actual == after.expected:
                    after = after.but(acked_version=after.cloud_version)
            if change.expected is not None:
                after = after.but(expected=twin.check_value(change.expected, kind, prop), expected_ts=now)
            writes.append(after)
            changed[prop] = (shown(before) if before else None, shown(after))
            results[prop] = shown(after)
        for t in writes:
            self.store.put_twin(device.id, t)
            current[t.prop] = t
        for prop in deletes:
            self.store.remove_twin(device.id, prop)
            current.pop(prop, None)
        self.dirty.add(device.id)
        base_topic = (device.namespace, device.name)
        out = [Publication(topics.device(*base_topic, "twin/update/result"), twin.result(event_id, results), qos=0),
               Publication(topics.device(*base_topic, "twin/update/document"), twin.document(event_id, changed),
                           qos=0)]
        return out + self._delta(device, current)

    def _state(self, device: Device, obj: dict[str, Any]) -> list[Publication]:
        state = twin.parse_state(obj)
        last_online = rfc3339(twin.now_ms() / 1000) if state in ONLINE_STATES else device.last_online
        self.store.set_state(device.id, state, last_online)
        self.dirty.add(device.id)
        return [Publication(topics.device(device.namespace, device.name, "state/update/result"),
                            twin.state_result(device.name, state, last_online), qos=0)]

    def membership_get(self, payload: bytes) -> list[Publication]:
        topic = topics.membership(self.node, "get/result")
        try:
            event_id = twin.event_id_of(twin.loads(payload))
        except TwinError as exc:
            self.refused += 1
            return [Publication(topic, twin.error("", exc.code, exc.reason), qos=0)]
        devices = [twin.membership_device(d.id, d.name, d.description, d.state, d.last_online)
                   for d in self.store.devices()]
        return [Publication(topic, twin.membership_get_result(event_id, devices), qos=0)]

    def _delta(self, device: Device, twins: dict[str, Twin], removed: tuple[str, ...] = ()) -> list[Publication]:
        """The retained delta: set while some expected value differs from the actual one, cleared after.

        Published only when it changes (what differs, not when): a device reporting readings with no
        desired value outstanding costs no delta traffic at all."""
        payload = twin.delta({k: shown(t) for k, t in twins.items()}, removed)
        differing = payload["delta"] if payload is not None else None
        if device.id in self._last_delta and self._last_delta[device.id] == differing:
            return []
        self._last_delta[device.id] = differing
        topic = topics.device(device.namespace, device.name, "twin/update/delta")
        return [Publication(topic, payload, qos=1, retain=True)]

    def _model_types(self, device: Device) -> dict[str, str]:
        model = self.store.model(f"{device.namespace}/{device.model}") if device.model else None
        if model is None:
            return {}
        return {name: twin.MODEL_TYPES.get(prop.type, "string")
                for name, prop in DeviceModel.view(model).properties.items()}

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
                return []
            return self._on_device(key, None if obj is None else DeviceObject.parse(obj))
        except BodyError as exc:
            self.refused += 1
            log.warning("refused %s from the cloud: %s", key, exc)
            return []

    def _on_device(self, key: ResourceKey, obj: DeviceObject | None) -> list[Publication]:
        device_id = f"{key.namespace}/{key.name}"
        existing = self.store.device(device_id)
        if obj is None or obj.node_name not in (None, self.node):
            if existing is None:
                return []
            self.store.remove_device(device_id)
            self.dirty.discard(device_id)
            gone = twin.membership_device(device_id, existing.name, existing.description, existing.state,
                                          existing.last_online)
            return [Publication(topics.membership(self.node, "updated"), twin.membership_updated([], [gone])),
                    Publication(topics.device(existing.namespace, existing.name, "twin/update/delta"), None,
                                retain=True)]
        device = Device(device_id, str(key.namespace), key.name, description=obj.description, model=obj.model or "",
                        state=existing.state if existing else "unknown",
                        last_online=existing.last_online if existing else "")
        self.store.put_device(device)
        rv = obj.meta.resource_version or ""
        # ASCII digits that fit SQLite's INTEGER: "²".isdigit() is true but int("²") raises, and a larger
        # number does not fit the store's column; any other version counts as 0.
        version = int(rv) if rv.isascii() and rv.isdigit() and int(rv) < 2**63 else 0
        twins, removed = self._apply_desired(device, obj.properties, version)
        out: list[Publication] = []
        if existing is None:
            added = twin.membership_device(device_id, device.name, device.description, device.state,
                                           device.last_online, {k: shown(t) for k, t in twins.items()})
            out.append(Publication(topics.membership(self.node, "updated"), twin.membership_updated([added], [])))
        return out + self._delta(device, twins, removed)

    def replace_devices(self, objects: dict[ResourceKey, dict[str, Any]]) -> list[Publication]:
        """Take MetaManager's full list: apply every model and device, drop the devices it no longer has."""
        out: list[Publication] = []
        for key, obj in sorted(objects.items(), key=lambda kv: kv[0].kind != DEVICEMODEL):
            out += self.on_cloud(key, obj)
        listed = {f"{k.namespace}/{k.name}" for k in objects if k.kind == DEVICE}
        for device in self.store.devices():
            if device.id not in listed:
                out += self.on_cloud(ResourceKey(device.namespace, DEVICE, device.name), None)
        return out

    def _apply_desired(self, device: Device, properties: tuple[DeviceProperty, ...],
                       version: int) -> tuple[dict[str, Twin], tuple[str, ...]]:
        twins = self.store.twins(device.id)
        types = self._model_types(device)
        now = twin.now_ms()
        wanted = {prop.name: prop.desired for prop in properties if prop.desired is not None}
        for name, value in wanted.items():
            before = twins.get(name) or Twin(name, kind=types.get(name, "string"), optional=False)
            if before.expected != value or not before.desired_by_cloud:
                after = before.but(expected=value, expected_ts=now, cloud_version=version, desired_by_cloud=True,
                                   kind=types.get(name, before.kind))
                if after.actual == value:
                    after = after.but(acked_version=version)
                self.store.put_twin(device.id, after)
                twins[name] = after
        removed = []
        for name, t in list(twins.items()):
            if t.desired_by_cloud and name not in wanted:
                removed.append(name)
                after = t.but(expected=None, expected_ts=0, desired_by_cloud=False)
                self.store.put_twin(device.id, after)
                twins[name] = after
        return twins, tuple(removed)

    # -- news for the cloud ----------------------------------------------------------------

    def take_reports(self) -> list[tuple[ResourceKey, dict[str, Any]]]:
        """The status of every device that changed since the last call, as the Device status wants it."""
        reports = []
        for device_id in sorted(self.dirty):
            device = self.store.device(device_id)
            if device is None:
                continue
            status: dict[str, Any] = {"state": device.state, "twins": []}
            if device.last_online:
                status["lastOnlineTime"] = device.last_online
            for t in self.store.twins(device_id).values():
                entry: dict[str, Any] = {"propertyName": t.prop}
                if t.actual is not None:
                    entry["reported"] = {"value": t.actual, "metadata": {"timestamp": str(t.actual_ts),
                                                                         "type": t.kind}}
                if t.desired_by_cloud and t.acked_version:
                    entry["observedDesired"] = {"value": t.expected or "",
                                                "metadata": {"version": str(t.acked_version)}}
                status["twins"].append(entry)
            reports.append((ResourceKey(device.namespace, DEVICESTATUS, device.name), status))
        self.dirty.clear()
        return reports
