"""Both ends of DMI over real gRPC on Unix sockets, in one process: the edge's DeviceManagerService and a mapper
built on edge/mappers/base.py (no broker: DeviceTwin's side is a list)."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from edge.dmi.devicemanager import DeviceManager, MapperCall
from edge.dmi.mapperclient import MapperCalls, get_device
from edge.dmi.server import DeviceManagerServicer, serve
from edge.mappers.base import DmiClient, MapperIdentity
from schemas.devicebus import DeviceRequest
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.support.dmi import RecordingMapper, dmi_device, dmi_model

MAX_MESSAGE = 64 * 1024


@dataclass
class Edge:
    manager: DeviceManager
    socket: Path
    handed: list[DeviceRequest] = field(default_factory=list)
    results: list[tuple[MapperCall, str | None]] = field(default_factory=list)
    calls: MapperCalls | None = None


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dmi-", dir="/tmp"))  # sun_path is short: pytest's tmp_path may not fit
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def edge(short_dir: Path) -> Iterator[Edge]:
    manager = DeviceManager("edge-1")
    manager.replace({ResourceKey("default", "devicemodel", "thermo"): dmi_model(),
                     ResourceKey("default", "device", "thermo-1"): dmi_device()})
    e = Edge(manager, short_dir / "dmi.sock")
    lock = threading.Lock()

    def address_of(protocol: str) -> str | None:
        mapper = manager.mappers.get(protocol)
        return mapper.address if mapper else None

    e.calls = MapperCalls(address_of, lambda call, why: e.results.append((call, why)))
    servicer = DeviceManagerServicer(manager, lock, to_devicetwin=e.handed.extend, registered=lambda _m: None,
                                     count=lambda _name: None)
    server = serve(servicer, e.socket, MAX_MESSAGE)
    try:
        yield e
    finally:
        server.stop(grace=0).wait(5)
        e.calls.close()


def test_a_mapper_registers_reports_and_is_told_of_changes(edge: Edge, short_dir: Path) -> None:
    mapper = RecordingMapper(MapperIdentity("modbus-mapper", "modbus", str(short_dir / "modbus.sock")),
                             DmiClient(str(edge.socket)))
    mapper.start(register_timeout=10)
    try:
        assert mapper.events == ["device thermo-1"]
        assert list(mapper.models) == [("default", "thermo")]
        mapper.dmi.report_twins("default", "thermo-1", {"temperature": "23.5"})
        mapper.dmi.report_state("default", "thermo-1", "online")
        assert [(r.name, r.request) for r in edge.handed] == [("thermo-1", "twin/update"), ("thermo-1", "state/update")]

        assert edge.calls is not None
        edge.calls.submit(edge.manager.on_change("device", "default/thermo-2", dmi_device("thermo-2")))
        edge.calls.submit(edge.manager.on_change("device", "default/thermo-1", None))
        wait_until(lambda: len(edge.results) == 2, timeout=10, what="two calls on the mapper")
        assert [(c.method, why) for c, why in edge.results] == [("RegisterDevice", None), ("RemoveDevice", None)]
        assert mapper.events[1:] == ["device thermo-2", "removed thermo-1"]
        got = get_device(edge.manager.mappers["modbus"], "default", "thermo-2")
        assert got.device.spec.protocol.protocolName == "modbus"
    finally:
        mapper.stop()


def test_bad_requests_get_grpc_errors_and_change_nothing(edge: Edge, short_dir: Path) -> None:
    dmi = DmiClient(str(edge.socket))
    try:
        with pytest.raises(grpc.RpcError) as refused:
            dmi.register(MapperIdentity("nameless", "", str(short_dir / "x.sock")))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "names no protocol" in str(refused.value.details())
        dmi.register(MapperIdentity("modbus-mapper", "modbus", str(short_dir / "modbus.sock")))
        with pytest.raises(grpc.RpcError) as other_node:
            dmi.report_twins("default", "elsewhere-1", {"temperature": "1"})
        assert other_node.value.code() == grpc.StatusCode.NOT_FOUND
        edge.manager.on_change("device", "default/thermo-9", dmi_device("thermo-9", node="edge-2"))
        with pytest.raises(grpc.RpcError) as bound_elsewhere:  # in the store, but bound to another node
            dmi.report_twins("default", "thermo-9", {"temperature": "1"})
        assert bound_elsewhere.value.code() == grpc.StatusCode.NOT_FOUND
        assert "device default/thermo-9 is bound to node edge-2" in str(bound_elsewhere.value.details())
        with pytest.raises(grpc.RpcError) as oversized:
            dmi.report_twins("default", "thermo-1", {f"p{i}": "1" * 500 for i in range(200)})
        assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for method, message in (("MapperRegister", "MapperRegisterRequest"),
                                ("ReportDeviceStatus", "ReportDeviceStatusRequest"),
                                ("ReportDeviceStates", "ReportDeviceStatesRequest")):
            path = f"/v1beta1.DeviceManagerService/{method}"
            raw = dmi.channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
            with pytest.raises(grpc.RpcError) as malformed:  # a tag whose varint never ends
                raw(b"\xff\xff\xff", timeout=5)
            assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert f"{path}: the request is not a v1beta1.{message} (3 bytes)" in str(malformed.value.details())
        assert edge.handed == []
        assert list(edge.manager.mappers) == ["modbus"]
    finally:
        dmi.close()


def test_a_mapper_that_disappears_fails_its_calls_and_nothing_else(edge: Edge, short_dir: Path) -> None:
    dmi = DmiClient(str(edge.socket))
    try:
        dmi.register(MapperIdentity("gone", "modbus", str(short_dir / "gone.sock")))  # nobody serves that socket
        assert edge.calls is not None
        edge.calls.submit(edge.manager.on_change("device", "default/thermo-2", dmi_device("thermo-2")))
        wait_until(lambda: len(edge.results) == 1, timeout=15, what="the failed call")
        call, why = edge.results[0]
        assert call.method == "RegisterDevice"
        assert why is not None
        assert "UNAVAILABLE" in why
        assert "default/thermo-2" in edge.manager.devices  # the node's state is as it was told
        dmi.report_twins("default", "thermo-1", {"temperature": "20"})  # and the edge still serves
        assert len(edge.handed) == 1
    finally:
        dmi.close()
