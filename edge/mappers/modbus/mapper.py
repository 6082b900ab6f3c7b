"""The Modbus mapper: DMI (edge/mappers/base.py) on one side, the Modbus devices (ModbusDevices) on the other.

Devices and models arrive through DMI; each device is parsed with its model (fromdmi) and handed to
``ModbusDevices``, whose events become DMI reports: readings to ``ReportDeviceStatus`` (with each value's type
and timestamp in the twin's metadata, as KubeEdge's mappers send them), online/offline to ``ReportDeviceStates``.
A desired value changed in the cloud reaches the mapper as an UpdateDevice, which ``ModbusDevices.apply`` turns
into a register write. A property with a ``pushMethod`` also has each collected value pushed by MQTT or HTTP
(edge/mappers/push.py, pusher.py), off the polling thread.

A device the mapper cannot honour is refused: RegisterDevice and UpdateDevice answer INVALID_ARGUMENT with the
field at fault (the edge's DMI logs it and keeps it as the mapper's last error) and the device is not polled
(a changed device keeps its previous, valid settings). A device whose model has not arrived yet is kept and
served once the model comes (the edge sends models and devices in separate calls).
"""

from __future__ import annotations

import logging
import threading

import grpc

from edge.mappers.base import DmiClient, Mapper, MapperIdentity
from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.devices import ModbusDevices
from edge.mappers.modbus.fromdmi import device_spec
from edge.mappers.modbus.spec import Collected, DeviceReport, DeviceSpec, MapperEvent, PropertyError, StateChange
from edge.mappers.pusher import Pusher
from runtime import hoptrace
from schemas.dmi.v1beta1 import api_pb2 as pb

log = logging.getLogger(__name__)

PROTOCOL = "modbus"


class ModbusMapper(Mapper):
    def __init__(self, identity: MapperIdentity, dmi: DmiClient) -> None:
        super().__init__(identity, dmi)
        self.modbus = ModbusDevices(self.on_event)
        self.pusher = Pusher(identity.name)
        self.refused: dict[tuple[str, str], str] = {}
        """Devices not served, with the reason (a bad configData, or a model still to come)."""
        self._report_errors: dict[tuple[str, str], str] = {}
        self._errors_lock = threading.Lock()

    # -- DMI -> Modbus ---------------------------------------------------------------------------

    def RegisterDevice(self, request: pb.RegisterDeviceRequest, context: grpc.ServicerContext
                       ) -> pb.RegisterDeviceResponse:
        self._refuse_if_bad(request.device, context)
        return super().RegisterDevice(request, context)

    def UpdateDevice(self, request: pb.UpdateDeviceRequest, context: grpc.ServicerContext) -> pb.UpdateDeviceResponse:
        self._refuse_if_bad(request.device, context)
        return super().UpdateDevice(request, context)

    def on_device(self, device: pb.Device) -> None:
        key = (device.namespace, device.name)
        model = self._model_of(device)
        if model is None and device.spec.deviceModelReference:
            self._refuse(key, f"device model {device.spec.deviceModelReference!r} has not reached the mapper yet")
            self.modbus.remove(*key)
            return
        try:
            spec = device_spec(device, model)
        except ModbusConfigError as exc:
            # Only a registration's devices get here bad (the calls were refused above): nothing to answer.
            self._refuse(key, str(exc))
            return
        self._serve(spec)

    def on_device_removed(self, namespace: str, name: str) -> None:
        self.refused.pop((namespace, name), None)
        self.modbus.remove(namespace, name)

    def on_model(self, model: pb.DeviceModel) -> None:
        """A model's types and access modes are part of its devices' settings: apply them again."""
        for device in self._devices_of(model.namespace, model.name):
            self.on_device(device)

    def on_model_removed(self, namespace: str, name: str) -> None:
        for device in self._devices_of(namespace, name):
            self.on_device(device)

    def stop(self) -> None:
        self.modbus.close()
        self.pusher.close()
        super().stop()

    # -- Modbus -> DMI ---------------------------------------------------------------------------

    def on_event(self, event: MapperEvent) -> None:
        """On a device's polling thread: report to the edge; a failed report is logged, the next one tried."""
        key = (event.namespace, event.name)
        if isinstance(event, Collected):  # to the property's pushMethod: not a report to the edge
            self.pusher.push(event.target, event.reading.property, event.reading.value, event.reading.timestamp_ms)
            return
        try:
            if isinstance(event, DeviceReport):
                hoptrace.hop("mapper_report", f"{event.namespace}/{event.name}")
                spec = self._served(key)
                desired = {r.property: d for r in event.readings
                           if spec is not None and (d := spec.property(r.property).desired) is not None}
                self.dmi.report_twins(
                    event.namespace, event.name, {r.property: r.value for r in event.readings},
                    observed_desired=desired,
                    metadata={r.property: {"type": r.type, "timestamp": str(r.timestamp_ms)} for r in event.readings})
            elif isinstance(event, StateChange):
                self.dmi.report_state(event.namespace, event.name, event.state.value)
            elif isinstance(event, PropertyError):
                log.warning("device %s/%s property %s: %s", event.namespace, event.name, event.property, event.reason)
                return
        except grpc.RpcError as exc:
            self._report_failed(key, exc)
            return
        with self._errors_lock:
            if self._report_errors.pop(key, None) is not None:
                log.info("device %s/%s: reports reach the edge again", *key)

    # -- helpers ----------------------------------------------------------------------------------

    def _refuse_if_bad(self, device: pb.Device, context: grpc.ServicerContext) -> None:
        model = self._model_of(device)
        if model is None and device.spec.deviceModelReference:
            return  # kept, and served when its model comes (on_device says so)
        try:
            device_spec(device, model)
        except ModbusConfigError as exc:
            reason = f"device {device.namespace}/{device.name}: {exc}"
            log.warning("refused %s", reason)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)

    def _serve(self, spec: DeviceSpec) -> None:
        if self.refused.pop(spec.key, None) is not None:
            log.info("device %s/%s is served now", *spec.key)
        self.modbus.apply(spec)

    def _refuse(self, key: tuple[str, str], reason: str) -> None:
        if self.refused.get(key) != reason:
            log.warning("device %s/%s is not served: %s", *key, reason)
        self.refused[key] = reason

    def _served(self, key: tuple[str, str]) -> DeviceSpec | None:
        return next((s for s in self.modbus.devices() if s.key == key), None)

    def _model_of(self, device: pb.Device) -> pb.DeviceModel | None:
        with self.lock:
            return self.models.get((device.namespace, device.spec.deviceModelReference))

    def _devices_of(self, namespace: str, model: str) -> list[pb.Device]:
        with self.lock:
            return [d for d in self.devices.values()
                    if d.namespace == namespace and d.spec.deviceModelReference == model]

    def _report_failed(self, key: tuple[str, str], exc: grpc.RpcError) -> None:
        reason = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.Call) else str(exc)
        with self._errors_lock:
            told = self._report_errors.get(key) == reason
            self._report_errors[key] = reason
        if not told:  # the edge may be restarting: once per reason, not at every report
            log.warning("device %s/%s: the edge refused or missed a report: %s", *key, reason)
