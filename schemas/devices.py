"""KubeEdge's Device and DeviceModel objects (devices.kubeedge.io/v1beta1, schemas/crds/) as the components read them.

DeviceTwin parses each one where it arrives from the cloud (``parse``: BodyError naming the field, the
object refused and nothing changed); DeviceController, the placement and the CLI read the API
server's copies through the same code as views (``view``: never raises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.fields import ReadByReader, Reader
from schemas.kubeobj import ObjectMeta
from schemas.twin import TYPES


@dataclass(frozen=True, slots=True)
class Reporting:
    """Whether and how often something a device reports goes on to the cloud."""

    to_cloud: bool = True
    cycle_ms: int = 0
    """One new value per this many milliseconds on average (0: not set, the node's default cycle applies;
    edge/devicetwin/reporting.py)."""

    @classmethod
    def read(cls, found: dict[str, Any], reader: Reader, where: str, *, to_cloud: bool) -> Reporting:
        """``reportToCloud`` and ``reportCycle`` of ``found``; ``to_cloud`` when reportToCloud is absent."""
        flag = found.get("reportToCloud")
        if not isinstance(flag, bool | None):
            flag = reader.refuse(f"{where}.reportToCloud", "must be true or false", None)
        cycle = reader.integer(found.get("reportCycle"), f"{where}.reportCycle") or 0
        if cycle < 0:
            cycle = reader.refuse(f"{where}.reportCycle", f"is {cycle}, not a number of milliseconds", 0)
        return cls(to_cloud if flag is None else flag, cycle)


@dataclass(frozen=True, slots=True)
class DeviceProperty:
    """One of a Device's ``spec.properties``: what the cloud wants it set to, if anything."""

    name: str
    desired: str | None
    """``desired.value``."""
    desired_type: str | None = None
    """``desired.metadata.type``: the twin's type, before the DeviceModel's (KubeEdge's cloud took the
    twin type from there)."""
    report: Reporting = Reporting()
    """``reportToCloud`` and ``reportCycle``."""


@dataclass(frozen=True, slots=True)
class DeviceMethod:
    """One of a Device's ``spec.methods``: a named group of its properties that a caller acts on together.

    edgehive checks it and passes it to the device's mapper in DMI's ``DeviceSpec.methods``; calling a
    method is the mapper's business (KubeEdge's mapper framework serves it over its own HTTP API)."""

    name: str
    description: str
    property_names: tuple[str, ...]


def read_methods(spec: dict[str, Any], reader: Reader, where: str = "body.spec") -> tuple[DeviceMethod, ...]:
    """``spec.methods``, each naming only properties the device has (``spec.properties[].name``) and each name
    once: a method that names a property the device lacks would reach the mapper as a call it cannot make.
    Lenient: a bad method is left out."""
    known = {p.get("name") for p in reader.mappings(spec.get("properties"), f"{where}.properties")}
    out: list[DeviceMethod] = []
    seen: set[str] = set()
    for index, method in enumerate(reader.mappings(spec.get("methods"), f"{where}.methods")):
        at = f"{where}.methods[{index}]"
        name = reader.required_text(method.get("name"), f"{at}.name")
        if not name:
            reader.refuse(f"{at}.name", "is empty", None)
            continue
        if name in seen:
            reader.refuse(f"{at}.name", f"{name[:40]!r} names another method too", None)
            continue
        names = method.get("propertyNames")
        if not isinstance(names, list | None) or not all(isinstance(n, str) for n in names or []):
            reader.refuse(f"{at}.propertyNames", "must be a list of property names", None)
            continue
        missing = [(i, n) for i, n in enumerate(names or []) if n not in known]
        if missing:
            i, n = missing[0]
            reader.refuse(f"{at}.propertyNames[{i}]", f"{n[:40]!r} is not one of the device's properties "
                                                      f"({', '.join(sorted(str(k) for k in known)) or 'none'})", None)
            continue
        seen.add(name)
        out.append(DeviceMethod(name, reader.text(method.get("description"), f"{at}.description") or "",
                                tuple(names or ())))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Device(ReadByReader):
    meta: ObjectMeta
    node_name: str | None
    """``spec.nodeName``: the node that serves it (None: no node)."""
    model: str | None
    """``spec.deviceModelRef.name``: its DeviceModel, in the same namespace."""
    properties: tuple[DeviceProperty, ...]
    state_report: Reporting = Reporting()
    """``spec.stateReport`` (KubeEdge 1.23), else the ``status.reportToCloud``/``reportCycle`` it had before.
    A device's state goes to the cloud unless one of them is given without ``reportToCloud: true`` (a Go
    bool: absent is false); with neither, as KubeEdge's edge forwards every state/update."""
    methods: tuple[DeviceMethod, ...] = ()
    """``spec.methods``, checked against the properties (read_methods)."""

    @property
    def description(self) -> str:
        """The ``description`` label, the one place KubeEdge's cloud takes a device's description from
        (createDevice): a client sees the same description in membership messages on either edge."""
        return self.meta.labels.get("description", "")

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> Device:
        found = reader.body(obj)
        spec = reader.mapping(found.get("spec"), "body.spec")
        ref = reader.mapping(spec.get("deviceModelRef"), "body.spec.deviceModelRef")
        properties = []
        for index, prop in enumerate(reader.mappings(spec.get("properties"), "body.spec.properties")):
            where = f"body.spec.properties[{index}]"
            desired = reader.mapping(prop.get("desired"), f"{where}.desired")
            kind = reader.text_map(desired.get("metadata"), f"{where}.desired.metadata").get("type")
            if kind is not None and kind not in TYPES - {"", "deleted"}:
                kind = reader.refuse(f"{where}.desired.metadata.type", f"is {kind[:40]!r}, not one of "
                                     f"{', '.join(sorted(TYPES - {'', 'deleted'}))}", None)
            # An absent reportToCloud keeps reporting: KubeEdge's edge sends every $hw/events reading up.
            properties.append(DeviceProperty(reader.required_text(prop.get("name"), f"{where}.name"),
                                             reader.text(desired.get("value"), f"{where}.desired.value"), kind,
                                             Reporting.read(prop, reader, where, to_cloud=True)))
        status = reader.mapping(found.get("status"), "body.status")
        if spec.get("stateReport") is not None:
            state = Reporting.read(reader.mapping(spec["stateReport"], "body.spec.stateReport"), reader,
                                   "body.spec.stateReport", to_cloud=False)
        elif "reportToCloud" in status or "reportCycle" in status:
            state = Reporting.read(status, reader, "body.status", to_cloud=False)
        else:
            state = Reporting()
        return cls(ObjectMeta.read(found.get("metadata"), reader),
                   reader.text(spec.get("nodeName"), "body.spec.nodeName"),
                   reader.text(ref.get("name"), "body.spec.deviceModelRef.name"), tuple(properties), state,
                   read_methods(spec, reader))


@dataclass(frozen=True, slots=True)
class ModelProperty:
    """One of a DeviceModel's ``spec.properties``: the type and range a reported value must fit."""

    name: str
    type: str
    """Upper case, as in the CRD (INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, TIMESTAMP); STRING when not given."""
    minimum: str | None
    maximum: str | None


@dataclass(frozen=True, slots=True)
class DeviceModel(ReadByReader):
    meta: ObjectMeta
    properties: dict[str, ModelProperty]
    """By name."""

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> DeviceModel:
        found = reader.body(obj)
        spec = reader.mapping(found.get("spec"), "body.spec")
        properties: dict[str, ModelProperty] = {}
        for index, prop in enumerate(reader.mappings(spec.get("properties"), "body.spec.properties")):
            where = f"body.spec.properties[{index}]"
            name = reader.required_text(prop.get("name"), f"{where}.name")
            kind = reader.text(prop.get("type"), f"{where}.type") or "STRING"
            properties[name] = ModelProperty(name, kind.upper(), reader.text(prop.get("minimum"), f"{where}.minimum"),
                                             reader.text(prop.get("maximum"), f"{where}.maximum"))
        return cls(ObjectMeta.read(found.get("metadata"), reader), properties)
