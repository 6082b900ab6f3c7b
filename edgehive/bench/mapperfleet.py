"""What ``bench mapper`` creates and what it reads back, kept apart from the processes so it is unit tested.

Two fleets of the same shape on one node: Modbus devices (``mb-N``) that the Modbus mapper polls and reports
through DMI, and plain devices (``mq-N``) whose readings the bench publishes itself on ``$hw/events`` (the
baseline). Property ``pJ`` of Modbus device ``I`` is holding register ``I * properties + J`` of the one
simulated server: no two properties share a register.

The Device status is read from a watch. A reported value counts once it is in the status with a timestamp not
seen before for that property (DeviceTwin stamps every value it takes, so an unchanged reading that reached
the status still counts; a value overwritten before the status showed it does not).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

GROUP, VERSION = "devices.kubeedge.io", "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
MODBUS_MODEL, MQTT_MODEL = "bench-modbus", "bench-mqtt"
MODBUS_PREFIX, MQTT_PREFIX = "mb-", "mq-"


@dataclass(frozen=True)
class Fleet:
    """How many devices of how many properties, read every ``collect_cycle_ms``."""

    devices: int
    properties: int
    collect_cycle_ms: int = 1000

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"devices must be at least 1, not {self.devices}")
        if self.properties < 1:
            raise ValueError(f"properties must be at least 1, not {self.properties}")
        if self.collect_cycle_ms < 100:
            raise ValueError(f"collect_cycle_ms must be at least 100, not {self.collect_cycle_ms}")
        if self.registers > 65536:
            raise ValueError(f"{self.devices} devices x {self.properties} properties need {self.registers} registers; "
                             "one Modbus server holds 65536")

    @property
    def registers(self) -> int:
        return self.devices * self.properties

    @property
    def offered_per_s(self) -> float:
        """Readings per second the fleet produces: every property once per collect cycle."""
        return self.registers * 1000 / self.collect_cycle_ms

    def prop(self, j: int) -> str:
        return f"p{j}"

    def offset(self, device: int, prop: int) -> int:
        return device * self.properties + prop

    def visitor(self, device: int, prop: int) -> dict[str, Any]:
        """The property's ``visitors.configData``: one 16-bit holding register read as an int."""
        return {"register": "HoldingRegister", "offset": self.offset(device, prop), "limit": 1, "dataType": "int"}

    def model(self, name: str, protocol: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"properties": [{"name": self.prop(j), "type": "INT", "accessMode": "ReadOnly"}
                                               for j in range(self.properties)]}
        if protocol is not None:
            spec["protocol"] = protocol
        return {"apiVersion": API_VERSION, "kind": "DeviceModel", "metadata": {"name": name}, "spec": spec}

    def modbus_device(self, i: int, node: str, port: int) -> dict[str, Any]:
        """Modbus device ``i``: no reportCycle, so the mapper reports at its default (one second, KubeEdge's) and
        DeviceTwin holds nothing back; what paces the values is the collect cycle alone."""
        return {"apiVersion": API_VERSION, "kind": "Device", "metadata": {"name": f"{MODBUS_PREFIX}{i}"},
                "spec": {"deviceModelRef": {"name": MODBUS_MODEL}, "nodeName": node,
                         "protocol": {"protocolName": "modbus",
                                      "configData": {"ip": "127.0.0.1", "port": port, "slaveID": 1}},
                         "properties": [{"name": self.prop(j), "collectCycle": self.collect_cycle_ms,
                                         "reportToCloud": True,
                                         "visitors": {"protocolName": "modbus", "configData": self.visitor(i, j)}}
                                        for j in range(self.properties)]}}

    def mqtt_device(self, i: int, node: str) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "Device", "metadata": {"name": f"{MQTT_PREFIX}{i}"},
                "spec": {"deviceModelRef": {"name": MQTT_MODEL}, "nodeName": node,
                         "properties": [{"name": self.prop(j), "reportToCloud": True}
                                        for j in range(self.properties)]}}


@dataclass
class StatusTally:
    """Reported values seen in Device statuses, fed from a watch (``feed``) and read by the bench (thread-safe).

    ``reports[prefix]``: values that reached the status, per fleet; ``first_seen[(device, prop, value)]``: when
    that value was first in the status (for latencies); ``complete(prefix, n, props)``: every property of the
    fleet's ``n`` devices has shown a value."""

    reports: dict[str, int] = field(default_factory=dict)
    first_seen: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _stamps: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, obj: dict[str, Any], now: int) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        prefix = next((p for p in (MODBUS_PREFIX, MQTT_PREFIX) if name.startswith(p)), None)
        if prefix is None:
            return
        twins = (obj.get("status") or {}).get("twins") or []
        with self._lock:
            for twin in twins:
                reported = twin.get("reported") if isinstance(twin, dict) else None
                if not isinstance(reported, dict) or "value" not in reported:
                    continue
                prop = str(twin.get("propertyName", ""))
                stamp = str((reported.get("metadata") or {}).get("timestamp", ""))
                if self._stamps.get((name, prop)) != stamp:
                    self._stamps[(name, prop)] = stamp
                    self.reports[prefix] = self.reports.get(prefix, 0) + 1
                self.first_seen.setdefault((name, prop, str(reported["value"])), now)

    def count(self, prefix: str) -> int:
        with self._lock:
            return self.reports.get(prefix, 0)

    def seen(self, device: str, prop: str, value: str) -> int | None:
        with self._lock:
            return self.first_seen.get((device, prop, value))

    def complete(self, prefix: str, devices: int, properties: int) -> bool:
        with self._lock:
            return sum(1 for (name, _prop) in self._stamps if name.startswith(prefix)) >= devices * properties


def rate(before: int, after: int, seconds: float) -> float:
    """Values per second between two counts ``seconds`` apart."""
    return round((after - before) / seconds, 1) if seconds > 0 else 0.0


def ratio(dmi_per_s: float, mqtt_per_s: float) -> float:
    """DMI's rate over the baseline's; 0 when the baseline delivered nothing (the run says so elsewhere)."""
    return round(dmi_per_s / mqtt_per_s, 3) if mqtt_per_s > 0 else 0.0


def cores(cpu_seconds: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU seconds over a window as cores kept busy."""
    return {name: round(value / seconds, 3) if seconds > 0 else 0.0 for name, value in cpu_seconds.items()}


def latencies(sent: dict[tuple[str, str, str], int], tally: StatusTally) -> list[int]:
    """Nanoseconds from each sent value to its first appearance in the status; values never seen are left out
    (the report gives how many were seen)."""
    out = []
    for (device, prop, value), at in sent.items():
        seen = tally.seen(device, prop, value)
        if seen is not None:
            out.append(max(0, seen - at))
    return out
