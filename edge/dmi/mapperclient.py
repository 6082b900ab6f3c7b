"""Calls from the edge to the mappers' DeviceMapperService, each on its own Unix socket.

One worker thread per protocol keeps that mapper's calls in order (a RemoveDevice must not overtake the
RegisterDevice before it) and keeps a slow or vanished mapper from holding up the others. A call that
fails is logged and counted, and not retried: a mapper that comes back registers again and is then given
every device of its protocol, which is more than any retry would bring it. A call the mapper answers with
INVALID_ARGUMENT is its refusal of what the call carried, told to ``on_refused`` besides: the DMI then keeps
the version the mapper still runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from edge.dmi.devicemanager import Mapper, MapperCall
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.dmi.v1beta1 import api_pb2_grpc as rpc

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0
"""KubeEdge gives each call to a mapper 10 s too."""
QUEUE_LIMIT = 10_000


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{address}")


def call(address: str, method: str, request: Message, timeout: float = CALL_TIMEOUT_S) -> Any:
    """One call on the mapper at ``address``; raises grpc.RpcError when it fails."""
    with channel(address) as chan:
        stub = rpc.DeviceMapperServiceStub(chan)
        return getattr(stub, method)(request, timeout=timeout)


def get_device(mapper: Mapper, namespace: str, name: str) -> pb.GetDeviceResponse:
    """What the mapper holds for a device (its GetDevice)."""
    with channel(mapper.address) as chan:
        answer: pb.GetDeviceResponse = rpc.DeviceMapperServiceStub(chan).GetDevice(
            pb.GetDeviceRequest(deviceName=name, deviceNamespace=namespace), timeout=CALL_TIMEOUT_S)
        return answer


class MapperCalls:
    """The calls queued for each protocol's mapper, made by one thread per protocol."""

    def __init__(self, address_of: Callable[[str], str | None], on_result: Callable[[MapperCall, str | None], None],
                 on_refused: Callable[[MapperCall, str], None] | None = None) -> None:
        self._address_of = address_of
        self._on_result = on_result
        """Told of every call made: None when it succeeded, else why it failed."""
        self._on_refused = on_refused
        """Told, after ``on_result``, of each call the mapper refused with INVALID_ARGUMENT, and its reason."""
        self._queues: dict[str, queue.Queue[MapperCall | None]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, calls: list[MapperCall]) -> None:
        for item in calls:
            with self._lock:
                work = self._queues.get(item.protocol)
                if work is None:
                    work = self._queues[item.protocol] = queue.Queue(QUEUE_LIMIT)
                    thread = threading.Thread(target=self._run, args=(work,), name=f"mapper-{item.protocol[:20]}",
                                              daemon=True)
                    self._threads.append(thread)
                    thread.start()
            try:
                work.put_nowait(item)
            except queue.Full:
                self._on_result(item, "too many calls queued for this mapper")

    def close(self) -> None:
        with self._lock:
            for work in self._queues.values():
                work.put(None)
        for thread in self._threads:
            thread.join(timeout=CALL_TIMEOUT_S)

    def _run(self, work: queue.Queue[MapperCall | None]) -> None:
        while (item := work.get()) is not None:
            address = self._address_of(item.protocol)
            if address is None:
                self._on_result(item, "no mapper of this protocol is registered")
                continue
            try:
                call(address, item.method, item.request)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                self._on_result(item, f"{code.name if code else 'error'}: {detail}")
                if code == grpc.StatusCode.INVALID_ARGUMENT and self._on_refused is not None:
                    self._on_refused(item, str(detail))
                continue
            except Exception as exc:  # this thread must live on, whatever one call did
                log.exception("calling %s on the %s mapper failed", item.method, item.protocol)
                self._on_result(item, str(exc))
                continue
            self._on_result(item, None)
