"""What every mapper shares, whatever its protocol: the DMI both ways.

A mapper serves DeviceMapperService on a socket of its own, registers it with the edge's
DeviceManagerService (KubeEdge's /etc/kubeedge/dmi.sock by default), keeps the devices and models the
edge gives it, and reports twins and states. A protocol's mapper subclasses ``Mapper`` and overrides the
``on_*`` hooks (start polling a device, stop it, ...); ``DmiClient`` is the edge's end as a mapper sees it.
It imports nothing of the edge's components: a mapper is a separate program that only speaks DMI, so one
built with KubeEdge's mapper framework could stand in its place.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.dmi.v1beta1 import api_pb2_grpc as rpc

log = logging.getLogger(__name__)

DEFAULT_DMI_SOCKET = "/etc/kubeedge/dmi.sock"
API_VERSION = "v1beta1"
CALL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class MapperIdentity:
    name: str
    protocol: str
    socket: str
    """Where this mapper serves DeviceMapperService (the address it registers)."""
    version: str = "edgehive"


class DmiClient:
    """Calls on the edge's DeviceManagerService; each raises grpc.RpcError with the edge's reason on refusal."""

    def __init__(self, dmi_socket: str = DEFAULT_DMI_SOCKET, timeout: float = CALL_TIMEOUT_S) -> None:
        self.channel = grpc.insecure_channel(f"unix:{dmi_socket}")
        self.stub = rpc.DeviceManagerServiceStub(self.channel)
        self.timeout = timeout

    def register(self, identity: MapperIdentity, with_data: bool = True) -> pb.MapperRegisterResponse:
        info = pb.MapperInfo(name=identity.name, version=identity.version, api_version=API_VERSION,
                             protocol=identity.protocol, address=identity.socket.encode(), state="ok")
        answer: pb.MapperRegisterResponse = self.stub.MapperRegister(
            pb.MapperRegisterRequest(withData=with_data, mapper=info), timeout=self.timeout)
        return answer

    def report_twins(self, namespace: str, name: str, reported: dict[str, str],
                     observed_desired: dict[str, str] | None = None,
                     metadata: dict[str, dict[str, str]] | None = None) -> None:
        """Reported values (strings, as in KubeEdge's twins), by property; ``metadata`` by property too (KubeEdge's
        mappers send each value's ``type`` and ``timestamp`` there)."""
        twins = [pb.Twin(propertyName=prop, reported=pb.TwinProperty(value=value, metadata=(metadata or {}).get(prop)),
                         observedDesired=pb.TwinProperty(value=(observed_desired or {}).get(prop, "")))
                 for prop, value in reported.items()]
        self.stub.ReportDeviceStatus(pb.ReportDeviceStatusRequest(
            deviceName=name, deviceNamespace=namespace, reportedDevice=pb.DeviceStatus(twins=twins)),
            timeout=self.timeout)

    def report_state(self, namespace: str, name: str, state: str) -> None:
        self.stub.ReportDeviceStates(pb.ReportDeviceStatesRequest(deviceName=name, deviceNamespace=namespace,
                                                                  state=state), timeout=self.timeout)

    def close(self) -> None:
        self.channel.close()


class Mapper(rpc.DeviceMapperServiceServicer):
    """The devices and models of one protocol on this node, kept as the edge sends them.

    The ``on_*`` hooks run on gRPC's threads (or on ``start``'s for the devices of the registration), after
    the device or model is stored; a subclass keeps them short and hands real work to its own threads.
    """

    def __init__(self, identity: MapperIdentity, dmi: DmiClient) -> None:
        self.identity = identity
        self.dmi = dmi
        self.lock = threading.Lock()
        self.devices: dict[tuple[str, str], pb.Device] = {}
        self.models: dict[tuple[str, str], pb.DeviceModel] = {}
        self.server: grpc.Server | None = None

    # -- hooks for a protocol ---------------------------------------------------------------

    def on_device(self, device: pb.Device) -> None:
        """A device to serve, new or changed."""

    def on_device_removed(self, namespace: str, name: str) -> None:
        """A device no longer this mapper's."""

    def on_model(self, model: pb.DeviceModel) -> None:
        """A device model, new or changed."""

    def on_model_removed(self, namespace: str, name: str) -> None:
        """A device model deleted."""

    # -- life --------------------------------------------------------------------------------

    def start(self, register_timeout: float = 60.0) -> None:
        """Serve DeviceMapperService, then register (again and again until the edge answers, it may be starting)."""
        path = Path(self.identity.socket)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mapper"))
        rpc.add_DeviceMapperServiceServicer_to_server(self, self.server)
        if self.server.add_insecure_port(f"unix:{path}") == 0:
            raise OSError(f"cannot listen on {path}")
        self.server.start()
        self.register(register_timeout)

    def register(self, timeout: float = 60.0) -> pb.MapperRegisterResponse:
        """Register with the edge and take its devices and models as the whole truth."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.dmi.register(self.identity)
                break
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                        or time.monotonic() > deadline:
                    raise
                log.info("the edge's DMI is not answering yet (%s); registering again", code)
                time.sleep(1.0)
        with self.lock:
            gone = set(self.devices) - {(d.namespace, d.name) for d in answer.deviceList}
            self.models = {(m.namespace, m.name): m for m in answer.modelList}
            self.devices = {(d.namespace, d.name): d for d in answer.deviceList}
        for model in answer.modelList:
            self.on_model(model)
        for namespace, name in gone:
            self.on_device_removed(namespace, name)
        for device in answer.deviceList:
            self.on_device(device)
        log.info("registered as %s mapper %s: %d devices, %d models", self.identity.protocol, self.identity.name,
                 len(answer.deviceList), len(answer.modelList))
        return answer

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=1).wait(5)
        self.dmi.close()

    # -- DeviceMapperService -------------------------------------------------------------

    def RegisterDevice(self, request: pb.RegisterDeviceRequest, context: grpc.ServicerContext
                       ) -> pb.RegisterDeviceResponse:
        self._put(request.device)
        return pb.RegisterDeviceResponse(deviceName=request.device.name, deviceNamespace=request.device.namespace)

    def UpdateDevice(self, request: pb.UpdateDeviceRequest, context: grpc.ServicerContext) -> pb.UpdateDeviceResponse:
        self._put(request.device)
        return pb.UpdateDeviceResponse()

    def RemoveDevice(self, request: pb.RemoveDeviceRequest, context: grpc.ServicerContext) -> pb.RemoveDeviceResponse:
        with self.lock:
            known = self.devices.pop((request.deviceNamespace, request.deviceName), None)
        if known is not None:
            self.on_device_removed(request.deviceNamespace, request.deviceName)
        return pb.RemoveDeviceResponse()

    def CreateDeviceModel(self, request: pb.CreateDeviceModelRequest, context: grpc.ServicerContext
                          ) -> pb.CreateDeviceModelResponse:
        self._put_model(request.model)
        return pb.CreateDeviceModelResponse(deviceModelName=request.model.name,
                                            deviceModelNamespace=request.model.namespace)

    def UpdateDeviceModel(self, request: pb.UpdateDeviceModelRequest, context: grpc.ServicerContext
                          ) -> pb.UpdateDeviceModelResponse:
        self._put_model(request.model)
        return pb.UpdateDeviceModelResponse()

    def RemoveDeviceModel(self, request: pb.RemoveDeviceModelRequest, context: grpc.ServicerContext
                          ) -> pb.RemoveDeviceModelResponse:
        with self.lock:
            known = self.models.pop((request.modelNamespace, request.modelName), None)
        if known is not None:
            self.on_model_removed(request.modelNamespace, request.modelName)
        return pb.RemoveDeviceModelResponse()

    def GetDevice(self, request: pb.GetDeviceRequest, context: grpc.ServicerContext) -> pb.GetDeviceResponse:
        with self.lock:
            device = self.devices.get((request.deviceNamespace, request.deviceName))
        if device is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"device {request.deviceNamespace}/{request.deviceName} is not served by this mapper")
        return pb.GetDeviceResponse(device=device)

    def _put(self, device: pb.Device) -> None:
        with self.lock:
            self.devices[(device.namespace, device.name)] = device
        self.on_device(device)

    def _put_model(self, model: pb.DeviceModel) -> None:
        with self.lock:
            self.models[(model.namespace, model.name)] = model
        self.on_model(model)
