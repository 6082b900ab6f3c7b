"""KubeEdge's Device and DeviceModel objects (devices.kubeedge.io/v1beta1, schemas/crds/) as the components read them.

DeviceTwin parses each one where it arrives from the cloud (``parse``: BodyError naming the field, the
object refused and nothing changed); DeviceController, the placement and the CLI read the API
server's copies through the same code as views (``view``: never raises).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.fields import LENIENT, STRICT, Reader
from schemas.kubeobj import ObjectMeta


@dataclass(frozen=True, slots=True)
class DeviceProperty:
    """One of a Device's ``spec.properties``: what the cloud wants it set to, if anything."""

    name: str
    desired: str | None
    """``desired.value``."""


@dataclass(frozen=True, slots=True)
class Device:
    meta: ObjectMeta
    node_name: str | None
    """``spec.nodeName``: the node that serves it (None: no node)."""
    model: str | None
    """``spec.deviceModelRef.name``: its DeviceModel, in the same namespace."""
    properties: tuple[DeviceProperty, ...]

    @property
    def description(self) -> str:
        return self.meta.annotations.get("description", "")

    @classmethod
    def read(cls, obj: Any, reader: Reader) -> Device:
        found = reader.body(obj)
        spec = reader.mapping(found.get("spec"), "body.spec")
        ref = reader.mapping(spec.get("deviceModelRef"), "body.spec.deviceModelRef")
        properties = []
        for index, prop in enumerate(reader.mappings(spec.get("properties"), "body.spec.properties")):
            where = f"body.spec.properties[{index}]"
            desired = reader.mapping(prop.get("desired"), f"{where}.desired")
            properties.append(DeviceProperty(reader.required_text(prop.get("name"), f"{where}.name"),
                                             reader.text(desired.get("value"), f"{where}.desired.value")))
        return cls(ObjectMeta.read(found.get("metadata"), reader),
                   reader.text(spec.get("nodeName"), "body.spec.nodeName"),
                   reader.text(ref.get("name"), "body.spec.deviceModelRef.name"), tuple(properties))

    @classmethod
    def parse(cls, obj: Any) -> Device:
        return cls.read(obj, STRICT)

    @classmethod
    def view(cls, obj: Any) -> Device:
        return cls.read(obj, LENIENT)


@dataclass(frozen=True, slots=True)
class ModelProperty:
    """One of a DeviceModel's ``spec.properties``: the type and range a reported value must fit."""

    name: str
    type: str
    """Upper case, as in the CRD (INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, TIMESTAMP); STRING when not given."""
    minimum: str | None
    maximum: str | None


@dataclass(frozen=True, slots=True)
class DeviceModel:
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

    @classmethod
    def parse(cls, obj: Any) -> DeviceModel:
        return cls.read(obj, STRICT)

    @classmethod
    def view(cls, obj: Any) -> DeviceModel:
        return cls.read(obj, LENIENT)
