"""DMI end to end: a mapper (edge/mappers/base.py, over the generated stubs) on the real Unix socket of a real edge
node's DMI process; its devices come from the API server and its reports reach the Device status there."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client as k8s

from edge.mappers.base import DmiClient, Mapper, MapperIdentity
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.envelope import decode
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.support import devices
from tests.support.cluster import Cluster, node_names
from tests.support.devices import GROUP, VERSION
from tests.support.dmi import RecordingMapper


@pytest.fixture
def mapper_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mapper-", dir="/tmp"))  # a Unix socket's path must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_dmi(cluster_factory: Any) -> tuple[Cluster, str]:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    edge, _link = cluster.nodes[node]
    edge.start("dmi")
    devices.apply(cluster.api.client, cluster.namespace, node)
    return cluster, node


def registered_devices(mapper: Mapper) -> list[str]:
    return [d.name for d in mapper.register(timeout=10).deviceList]


def queued_temperatures(data: Path, namespace: str) -> list[str | None]:
    """The temperature in each status of the device waiting in the node's outbox (EdgeHub's SQLite file, read
    only), oldest first."""
    with contextlib.closing(sqlite3.connect(f"file:{data / 'outbox.db'}?mode=ro", uri=True, timeout=10)) as db:
        rows = db.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
    found = []
    for envelope in (decode(bytes(row[0])) for row in rows):
        if envelope.res == ResourceKey(namespace, "devicestatus", devices.DEVICE) and isinstance(envelope.body, dict):
            twins = envelope.body["status"].get("twins") or []
            found.append(next((t["reported"]["value"] for t in twins
                               if t.get("propertyName") == "temperature" and "reported" in t), None))
    return found


def queued_only(data: Path, namespace: str, temperature: str) -> bool:
    return queued_temperatures(data, namespace) == [temperature]


def test_a_mapper_registers_gets_its_devices_and_reports_reach_the_device_status(cluster_factory: Any,
                                                                                mapper_dir: Path) -> None:
    cluster, node = start_dmi(cluster_factory)
    edge, link = cluster.nodes[node]
    ns = cluster.namespace
    mapper = RecordingMapper(MapperIdentity("modbus-test", "modbus", str(mapper_dir / "modbus.sock")),
                             DmiClient(str(edge.dmi_socket)))
    mapper.start(register_timeout=30)
    try:
        # The cloud sends the Device and its DeviceModel apart: the model may come with the registration or
        # after it (CreateDeviceModel), whichever reached the node first.
        wait_until(lambda: registered_devices(mapper) == [devices.DEVICE]
                   and [m.name for m in mapper.models.values()] == ["thermo"], timeout=60,
                   what="the device and its model at the mapper")
        device = mapper.devices[(ns, devices.DEVICE)]
        assert device.spec.deviceModelReference == "thermo"
        assert [p.name for p in device.spec.properties] == ["setpoint", "temperature"]
        assert device.spec.properties[0].desired.value == "25"

        mapper.dmi.report_twins(ns, devices.DEVICE, {"temperature": "23.5"})
        mapper.dmi.report_state(ns, devices.DEVICE, "online")
        wait_until(lambda: devices.reported(cluster.api.client, ns, "temperature") == "23.5"
                   and devices.status(cluster.api.client, ns).get("state") == "online",
                   timeout=30, what="the mapper's reading and state in the Device status")

        # A device added and removed in the API server: the edge calls the mapper's DeviceMapperService.
        custom = k8s.CustomObjectsApi(cluster.api.client)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devices", devices.device("thermo-2", node, "20"))
        wait_until(lambda: "device thermo-2" in mapper.events, timeout=30, what="RegisterDevice of thermo-2")
        custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "devices", "thermo-2")
        wait_until(lambda: "removed thermo-2" in mapper.events, timeout=30, what="RemoveDevice of thermo-2")

        # With the link down, the node's store answers a registration and keeps the reports for the cloud: each
        # one (DeviceTwin sends it as the device's status) replaces the one before in EdgeHub's outbox, and the
        # last alone goes up when the link is back.
        link.down()
        assert registered_devices(mapper) == [devices.DEVICE]
        for value in ("18.5", "19.0", "19.5"):
            mapper.dmi.report_twins(ns, devices.DEVICE, {"temperature": value})
            wait_until(partial(queued_only, edge.data, ns, value), timeout=30,
                       what=f"the reading {value} as the one status of the device in the outbox")
        link.up()
        wait_until(lambda: devices.reported(cluster.api.client, ns, "temperature") == "19.5", timeout=30,
                   what="the last reading made offline in the Device status")

        # One report goes to DeviceTwin as one request; a twin DeviceTwin refuses (setpoint is an INT in the
        # model) is refused alone, and the report's other twin is kept.
        mapper.dmi.report_twins(ns, devices.DEVICE, {"setpoint": "warm", "temperature": "24.5"})
        wait_until(lambda: devices.reported(cluster.api.client, ns, "temperature") == "24.5", timeout=30,
                   what="the good twin of a report with a bad one in the Device status")
        assert devices.reported(cluster.api.client, ns, "setpoint") is None
    finally:
        mapper.stop()


def test_a_bad_mapper_gets_a_clear_error_and_changes_nothing(cluster_factory: Any, mapper_dir: Path) -> None:
    cluster, node = start_dmi(cluster_factory)
    edge, _link = cluster.nodes[node]
    ns = cluster.namespace
    dmi = DmiClient(str(edge.dmi_socket))
    try:
        identity = MapperIdentity("modbus-test", "modbus", str(mapper_dir / "gone.sock"))  # nobody serves it
        wait_until(lambda: [d.name for d in dmi.register(identity).deviceList] == [devices.DEVICE], timeout=60,
                   what="the device at the edge")
        with pytest.raises(grpc.RpcError) as no_protocol:
            dmi.register(MapperIdentity("nameless", "", str(mapper_dir / "x.sock")))
        assert no_protocol.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as oversized:
            dmi.report_twins(ns, devices.DEVICE, {f"p{i}": "1" * 500 for i in range(3000)})
        assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError) as bad_value:
            dmi.report_twins(ns, devices.DEVICE, {"temperature": "not a number!"})
        assert bad_value.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A Device of another node, in the cluster, created before thermo-2: once thermo-2 has reached this node,
        # DeviceController has had it too, and this node has not been sent it.
        custom = k8s.CustomObjectsApi(cluster.api.client)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devices",
                                               devices.device("on-another-node", f"{node}-b", "20"))
        # The mapper that registered has gone: calls about a new device fail at the edge, which still serves.
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devices", devices.device("thermo-2", node, "20"))
        wait_until(lambda: "thermo-2" in [d.name for d in dmi.register(identity, with_data=True).deviceList],
                   timeout=30, what="thermo-2 at the edge")
        with pytest.raises(grpc.RpcError) as not_here:
            dmi.report_twins(ns, "on-another-node", {"temperature": "1"})
        assert not_here.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"device {ns}/on-another-node is not a member of node {node}" in str(not_here.value.details())
        dmi.report_twins(ns, devices.DEVICE, {"temperature": "21.5"})
        wait_until(lambda: devices.reported(cluster.api.client, ns, "temperature") == "21.5", timeout=30,
                   what="a good report after the bad ones")
        # nothing of the refused reports was taken: no twin of theirs, and the state as it was
        status = devices.status(cluster.api.client, ns)
        assert [t["propertyName"] for t in status["twins"]] == ["setpoint", "temperature"]
        assert status.get("state") in (None, "unknown")
    finally:
        dmi.close()


class RefusingMapper(RecordingMapper):
    """Refuses an update whose setpoint is 99, as the Modbus mapper refuses a field it cannot honour."""

    def UpdateDevice(self, request: pb.UpdateDeviceRequest, context: grpc.ServicerContext) -> pb.UpdateDeviceResponse:
        if any(p.name == "setpoint" and p.desired.value == "99" for p in request.device.spec.properties):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "properties[setpoint]: 99 is above this device's maximum")
        return super().UpdateDevice(request, context)


def setpoint_of(device: pb.Device) -> str:
    return next(p.desired.value for p in device.spec.properties if p.name == "setpoint")


def test_a_refused_version_leaves_the_mapper_and_the_dmi_on_the_last_accepted_one(cluster_factory: Any,
                                                                                mapper_dir: Path) -> None:
    cluster, node = start_dmi(cluster_factory)
    edge, _link = cluster.nodes[node]
    ns = cluster.namespace
    dmi_process = edge.processes["dmi"]
    custom = k8s.CustomObjectsApi(cluster.api.client)
    mapper = RefusingMapper(MapperIdentity("modbus-test", "modbus", str(mapper_dir / "modbus.sock")),
                            DmiClient(str(edge.dmi_socket)))
    mapper.start(register_timeout=30)

    def patch(setpoint: str, config: dict[str, Any]) -> None:  # a JSON merge patch
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "devices", devices.DEVICE, {"spec": {
            "protocol": {"protocolName": "modbus", "configData": config},
            "properties": [{"name": "setpoint", "desired": {"value": setpoint}},
                           {"name": "temperature", "reportToCloud": True}]}})

    def registered_setpoint() -> str:
        (device,) = mapper.register(timeout=10).deviceList
        return setpoint_of(device)

    def logged(text: str) -> bool:
        return text in dmi_process.log_tail(400)

    try:
        wait_until(lambda: registered_devices(mapper) == [devices.DEVICE], timeout=60,
                   what="the device in the mapper's registration")

        # Refused at the DMI: a configData value no mapper can be given. Nothing reaches the mapper, and a
        # registration gets the last accepted version (before, it got no device at all and dropped it).
        patch("40", {"slaveID": 1, "table": {"nested": 1}})
        wait_until(lambda: logged(f"refused this version of device {ns}/{devices.DEVICE}"), timeout=30,
                   what="the DMI's refusal in its log")
        assert logged("spec.protocol.configData.table")
        assert [setpoint_of(d) for d in mapper.received if setpoint_of(d) != "25"] == []  # never the refused one
        assert registered_setpoint() == "25"
        assert f"removed {devices.DEVICE}" not in mapper.events
        mapper.dmi.report_twins(ns, devices.DEVICE, {"temperature": "22.5"})  # the device is still served
        wait_until(lambda: devices.reported(cluster.api.client, ns, "temperature") == "22.5", timeout=30,
                   what="a reading of the device whose new version was refused")

        # Refused by the mapper: it keeps the version it runs, and the DMI gives that one to a registration.
        patch("99", {"slaveID": 1, "table": None})  # a merge patch: None removes the key
        wait_until(lambda: logged("the modbus mapper refused it"), timeout=30, what="the mapper's refusal logged")
        assert setpoint_of(mapper.devices[(ns, devices.DEVICE)]) == "25"
        assert registered_setpoint() == "25"

        # The node's store holds only the refused version: a restarted DMI still gives the last good one (it
        # kept it on disk), and does not send the refused one again.
        edge.stop("dmi")
        dmi_process = edge.start("dmi")

        def registered_after_restart() -> str | None:
            try:
                return registered_setpoint()
            except grpc.RpcError:  # the DMI is still starting
                return None

        wait_until(lambda: registered_after_restart() == "25", timeout=60,
                   what="the last good version in a registration after the DMI's restart")
        assert logged("refused versions from before the restart")
        assert setpoint_of(mapper.devices[(ns, devices.DEVICE)]) == "25"

        # A good version is sent and runs.
        patch("30", {"slaveID": 1, "table": None})
        wait_until(lambda: setpoint_of(mapper.devices[(ns, devices.DEVICE)]) == "30", timeout=30,
                   what="the good version at the mapper")
        assert registered_setpoint() == "30"
    finally:
        mapper.stop()
