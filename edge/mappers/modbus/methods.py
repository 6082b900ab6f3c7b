"""The Modbus mapper as the target of the device-method API (edge/mappers/methodapi.py): its devices as DMI gave
them, and writes through the same path as a desired value (ModbusDevices.set_desired), so a value the
registers cannot hold, or a read-only property, is refused before anything is queued."""

from __future__ import annotations

from edge.mappers.methodapi import MethodError
from edge.mappers.modbus.codec import EncodeError
from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.mapper import ModbusMapper
from schemas.dmi.v1beta1 import api_pb2 as pb


class ModbusMethods:
    def __init__(self, mapper: ModbusMapper) -> None:
        self.mapper = mapper

    def method_device(self, namespace: str, name: str) -> tuple[pb.Device, pb.DeviceModel | None] | None:
        with self.mapper.lock:
            device = self.mapper.devices.get((namespace, name))
            model = None if device is None else self.mapper.models.get(
                (namespace, device.spec.deviceModelReference))
        return None if device is None else (device, model)

    def write(self, namespace: str, name: str, prop: str, value: str) -> None:
        refused = self.mapper.refused.get((namespace, name))
        if refused is not None:
            raise MethodError(409, f"device {namespace}/{name} is not served: {refused}")
        try:
            self.mapper.modbus.set_desired(namespace, name, prop, value)
        except KeyError as exc:
            raise MethodError(404, str(exc.args[0]) if exc.args else f"no {prop!r} on {namespace}/{name}") from None
        except (ModbusConfigError, EncodeError) as exc:
            raise MethodError(400, f"device {namespace}/{name} property {prop}: {exc}") from None
