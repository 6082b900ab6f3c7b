"""What the DMI side hands the Modbus mapper (devices) and what it gets back (events), as types.

The DMI side (edge/mappers/base.py's ``Mapper``) turns a DMI ``Device`` and its ``DeviceModel`` into a
``DeviceSpec`` with ``parse_device``, gives it to ``ModbusDevices.apply`` and receives ``MapperEvent``s through
the callback it passed: ``DeviceReport`` (twin values to report), ``StateChange`` (online/offline) and
``PropertyError`` (a property that cannot be read or written, with the reason).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.mappers.modbus.config import (
    ModbusConfigError,
    ProtocolConfig,
    VisitorConfig,
    parse_protocol,
    parse_visitor,
)
from edge.mappers.push import PushTarget

DEFAULT_CYCLE_MS = 1000
"""KubeEdge's mappers collect and report every second when a property gives no cycle (0 or omitted)."""

READ_ONLY = "ReadOnly"


@dataclass(frozen=True)
class PropertySpec:
    """One property of a device: where it is, how often to read and report it, and its desired value."""

    name: str
    visitor: VisitorConfig
    collect_cycle_ms: int = DEFAULT_CYCLE_MS
    report_cycle_ms: int = DEFAULT_CYCLE_MS
    writable: bool = True
    """False when the DeviceModel's accessMode is ReadOnly: desired values are then not written."""
    desired: str | None = None
    push: PushTarget | None = None
    """``pushMethod``: where each collected value also goes (edge/mappers/push.py)."""


@dataclass(frozen=True)
class DeviceSpec:
    namespace: str
    name: str
    protocol: ProtocolConfig
    properties: tuple[PropertySpec, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def property(self, name: str) -> PropertySpec:
        for prop in self.properties:
            if prop.name == name:
                return prop
        raise KeyError(f"device {self.namespace}/{self.name} has no property {name!r}")


@dataclass(frozen=True)
class PropertyInput:
    """A property as the Device and its model give it, before parsing (``visitors.configData`` as a map)."""

    name: str
    config_data: Mapping[str, Any]
    model_type: str | None = None
    access_mode: str | None = None
    collect_cycle_ms: int = 0
    report_cycle_ms: int = 0
    desired: str | None = None
    push: PushTarget | None = None


class DeviceState(enum.Enum):
    """The device states KubeEdge's mappers report for a Modbus device's connection."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class Reading:
    property: str
    value: str
    type: str
    """The twin's metadata.type: int, float, double, boolean or string."""
    timestamp_ms: int


@dataclass(frozen=True)
class DeviceReport:
    """Values collected since the last report of these properties, due for reporting now."""

    namespace: str
    name: str
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class StateChange:
    namespace: str
    name: str
    state: DeviceState
    reason: str = ""


@dataclass(frozen=True)
class Collected:
    """A value just read from a property that has a push target: for the pusher, at every collectCycle."""

    namespace: str
    name: str
    target: PushTarget
    reading: Reading


@dataclass(frozen=True)
class PropertyError:
    namespace: str
    name: str
    property: str
    reason: str


MapperEvent = DeviceReport | StateChange | PropertyError | Collected


@dataclass(frozen=True)
class DeviceInput:
    """A device as DMI gives it, before parsing."""

    namespace: str
    name: str
    protocol_config: Mapping[str, Any]
    properties: Sequence[PropertyInput] = field(default_factory=tuple)


def parse_property(raw: PropertyInput) -> PropertySpec:
    """One property, its errors prefixed with the property's name so that the user finds the bad field."""
    try:
        visitor = parse_visitor(raw.config_data, raw.model_type)
        collect = _cycle(raw.collect_cycle_ms, "collectCycle")
        report = _cycle(raw.report_cycle_ms, "reportCycle")
    except ModbusConfigError as exc:
        raise ModbusConfigError(f"properties[{raw.name}].{exc}") from None
    return PropertySpec(
        name=raw.name,
        visitor=visitor,
        collect_cycle_ms=collect,
        report_cycle_ms=report,
        writable=raw.access_mode != READ_ONLY,
        desired=raw.desired or None,
        push=raw.push,
    )


def parse_device(raw: DeviceInput) -> DeviceSpec:
    """A whole device, or a ModbusConfigError naming the first bad field; nothing is half-accepted."""
    names = [p.name for p in raw.properties]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModbusConfigError(f"properties: {', '.join(duplicates)} appear more than once")
    return DeviceSpec(
        namespace=raw.namespace,
        name=raw.name,
        protocol=parse_protocol(raw.protocol_config),
        properties=tuple(parse_property(p) for p in raw.properties),
    )


def _cycle(value: int, name: str) -> int:
    if value < 0:
        raise ModbusConfigError(f"{name}: {value} ms is negative")
    return value or DEFAULT_CYCLE_MS
