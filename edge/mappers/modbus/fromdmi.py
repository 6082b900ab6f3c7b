"""A DMI ``Device`` (with its ``DeviceModel``) as the Modbus side's ``DeviceInput``, and its parsed ``DeviceSpec``.

configData comes packed (schemas.dmi.values): unpacked here into the plain map ``edge.mappers.modbus.config``
parses. The model gives each property its ``type`` (the twin's type when the visitor names no ``dataType``) and
its ``accessMode`` (ReadOnly: desired values are not written); the device gives the cycles and the desired value.
"""

from __future__ import annotations

from typing import Any

from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.spec import DeviceInput, DeviceSpec, PropertyInput, parse_device
from edge.mappers.push import PushRefused, PushTarget, parse_push
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.dmi.values import NotAWrapper, unpack


def _config(value: pb.CustomizedValue, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, packed in value.data.items():
        try:
            out[key] = unpack(packed)
        except NotAWrapper as exc:
            raise ModbusConfigError(f"{where}.{key}: {exc}") from None
    return out


def device_input(device: pb.Device, model: pb.DeviceModel | None) -> DeviceInput:
    model_props = {p.name: p for p in model.spec.properties} if model is not None else {}
    properties = []
    for prop in device.spec.properties:
        known = model_props.get(prop.name)
        properties.append(PropertyInput(
            name=prop.name,
            config_data=_config(prop.visitors.configData, f"properties[{prop.name}].visitors.configData"),
            model_type=known.type or None if known is not None else None,
            access_mode=known.accessMode or None if known is not None else None,
            collect_cycle_ms=prop.collectCycle,
            report_cycle_ms=prop.reportCycle,
            desired=prop.desired.value if prop.HasField("desired") else None,
            push=_push(prop),
        ))
    return DeviceInput(namespace=device.namespace or "default", name=device.name,
                       protocol_config=_config(device.spec.protocol.configData, "protocol.configData"),
                       properties=tuple(properties))


def _push(prop: pb.DeviceProperty) -> PushTarget | None:
    if not prop.HasField("pushMethod"):
        return None
    try:
        return parse_push(prop.pushMethod, f"properties[{prop.name}].pushMethod")
    except PushRefused as exc:
        raise ModbusConfigError(str(exc)) from None


def device_spec(device: pb.Device, model: pb.DeviceModel | None) -> DeviceSpec:
    """The device as the Modbus side polls it, or a ModbusConfigError naming the first field it cannot honour."""
    return parse_device(device_input(device, model))
