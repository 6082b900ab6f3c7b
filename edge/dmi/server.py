"""DeviceManagerService on a Unix socket: gRPC at the edge of the DMI process, the logic in DeviceManager."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError, Message

from edge.dmi.devicemanager import DeviceManager, Mapper, Refused
from runtime import hoptrace
from schemas.devicebus import DeviceRequest
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.dmi.v1beta1 import api_pb2_grpc as rpc

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["DeviceManagerService"]

LIST_WAIT_S = 10.0
"""How long a registration waits for the node's device list when the process has just started."""


class DeviceManagerServicer(rpc.DeviceManagerServiceServicer):
    """Each call under one lock with the store's changes, so that a mapper registering while its devices change
    either gets the device in its answer or is called about it afterwards, never neither."""

    def __init__(self, manager: DeviceManager, lock: threading.Lock, *,
                 to_devicetwin: Callable[[list[DeviceRequest]], None],
                 registered: Callable[[Mapper], None],
                 count: Callable[[str], None]) -> None:
        self.manager = manager
        self.lock = lock
        self.to_devicetwin = to_devicetwin
        self.registered = registered
        self.count = count

    def MapperRegister(self, request: pb.MapperRegisterRequest, context: grpc.ServicerContext
                       ) -> pb.MapperRegisterResponse:
        if not self.manager.listed.wait(LIST_WAIT_S):
            self._refuse(context, Refused(grpc.StatusCode.UNAVAILABLE,
                                          "this node's devices are not loaded yet (MetaManager has not answered); "
                                          "register again shortly"))
        try:
            with self.lock:
                mapper, answer = self.manager.register(request)
                self.registered(mapper)
        except Refused as exc:
            self._refuse(context, exc)
        log.info("mapper %s registered for protocol %s at %s: %d devices, %d models", mapper.name, mapper.protocol,
                 mapper.address, len(answer.deviceList), len(answer.modelList))
        self.count("mapper_registrations")
        return answer

    def ReportDeviceStatus(self, request: pb.ReportDeviceStatusRequest, context: grpc.ServicerContext
                           ) -> pb.ReportDeviceStatusResponse:
        hoptrace.hop("dmi_received", f"{request.deviceNamespace}/{request.deviceName}")
        try:
            with self.lock:
                requests = self.manager.report_status(request)
        except Refused as exc:
            self._refuse(context, exc)
        self._hand_over(requests, context)
        hoptrace.hop("dmi_handed", f"{request.deviceNamespace}/{request.deviceName}")
        self.count("twin_reports")
        return pb.ReportDeviceStatusResponse()

    def ReportDeviceStates(self, request: pb.ReportDeviceStatesRequest, context: grpc.ServicerContext
                           ) -> pb.ReportDeviceStatesResponse:
        try:
            with self.lock:
                state = self.manager.report_states(request)
        except Refused as exc:
            self._refuse(context, exc)
        self._hand_over([state], context)
        self.count("state_reports")
        return pb.ReportDeviceStatesResponse()

    def _hand_over(self, requests: list[DeviceRequest], context: grpc.ServicerContext) -> None:
        try:
            self.to_devicetwin(requests)
        except Exception as exc:  # the edge broker is away: the mapper must know its report was not taken
            log.warning("could not hand a mapper's report to DeviceTwin: %s", exc)
            self._refuse(context, Refused(grpc.StatusCode.UNAVAILABLE, f"DeviceTwin is not reachable: {exc}"))

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[bytes, Message]]:
        """This servicer's methods by name, each given the request's bytes to parse itself. With the generated
        handlers, bytes that are no request of the method's type fail in gRPC's deserializer, and the mapper
        gets INTERNAL "Exception deserializing request!", which says neither that it sent them nor where. Here
        they are refused with INVALID_ARGUMENT naming the method, the message type and protobuf's reason."""
        out: dict[str, grpc.RpcMethodHandler[bytes, Message]] = {}
        for method in SERVICE.methods:
            request_type: type[Message] = getattr(pb, method.input_type.name)
            response_type: type[Message] = getattr(pb, method.output_type.name)
            out[method.name] = grpc.unary_unary_rpc_method_handler(
                self._parsing(f"/{SERVICE.full_name}/{method.name}", request_type, getattr(self, method.name)),
                response_serializer=response_type.SerializeToString)  # no request_deserializer: bytes come in
        return out

    def _parsing(self, path: str, request_type: type[Message],
                 handle: Callable[[Any, grpc.ServicerContext], Message]) -> Callable[[bytes, grpc.ServicerContext],
                                                                                      Message]:
        def behaviour(data: bytes, context: grpc.ServicerContext) -> Message:
            try:
                request = request_type.FromString(data)
            except DecodeError as exc:
                self._refuse(context, Refused(grpc.StatusCode.INVALID_ARGUMENT,
                                              f"{path}: the request is not a {request_type.DESCRIPTOR.full_name} "
                                              f"({len(data)} bytes): {exc}"))
            return handle(request, context)
        return behaviour

    def _refuse(self, context: grpc.ServicerContext, exc: Refused) -> NoReturn:
        self.count("refused")
        log.info("refused a mapper's request: %s", exc.reason)
        context.abort(exc.code, exc.reason)  # raises: nothing after it runs


def serve(servicer: DeviceManagerServicer, socket_path: Path, max_message_bytes: int, workers: int = 8
          ) -> grpc.Server:
    """Listen on ``socket_path`` (a stale socket from a previous run is replaced), readable by the owner and
    its group only: any process that can connect can report any device of this node."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dmi"), options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes)])
    handlers = servicer.handlers()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)  # as the generated code registers them
    if server.add_insecure_port(f"unix:{socket_path}") == 0:
        raise OSError(f"cannot listen on {socket_path}")
    server.start()
    os.chmod(socket_path, 0o660)
    return server

