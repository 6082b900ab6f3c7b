"""Devices and models of the DMI tests: a Modbus-like device whose properties say where a mapper reads them."""

from __future__ import annotations

from typing import Any

from edge.mappers.base import DmiClient, Mapper, MapperIdentity
from schemas.dmi.v1beta1 import api_pb2 as pb

NS = "default"


class RecordingMapper(Mapper):
    """A mapper that remembers, in order, what the edge told it about its devices."""

    def __init__(self, identity: MapperIdentity, dmi: DmiClient) -> None:
        super().__init__(identity, dmi)
        self.events: list[str] = []
        self.received: list[pb.Device] = []
        """Every Device the edge gave it (RegisterDevice, UpdateDevice), in order."""

    def on_device(self, device: pb.Device) -> None:
        self.events.append(f"device {device.name}")
        self.received.append(device)

    def on_device_removed(self, namespace: str, name: str) -> None:
        self.events.append(f"removed {name}")


def dmi_model(name: str = "thermo", protocol: str = "modbus", namespace: str = NS) -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"protocol": protocol, "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly", "unit": "C",
                 "visitors": {"protocolName": protocol, "configData": {"register": "InputRegister", "limit": 1}}},
                {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"}]}}


def dmi_device(name: str = "thermo-1", node: str = "edge-1", protocol: str = "modbus", namespace: str = NS,
               setpoint: str = "25", model: str = "thermo") -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"deviceModelRef": {"name": model}, "nodeName": node,
                     "protocol": {"protocolName": protocol, "configData": {"slaveID": 1, "ip": "127.0.0.1"}},
                     "properties": [
                         {"name": "setpoint", "desired": {"value": setpoint, "metadata": {"type": "int"}},
                          "collectCycle": 1000, "reportCycle": 1000, "reportToCloud": True,
                          "visitors": {"protocolName": protocol,
                                       "configData": {"register": "HoldingRegister", "offset": 2, "scale": 0.5,
                                                      "isSwap": False}}},
                         {"name": "temperature", "reportToCloud": True,
                          "visitors": {"protocolName": protocol, "configData": {"offset": 7}}}],
                     "methods": [{"name": "adjust", "propertyNames": ["setpoint"]}]}}
