"""`edgehive mapper modbus` end to end, on real parts: the mapper process registered on a real edge node's DMI
socket, a v1beta1 DeviceModel and Device with Modbus configData in the real API server, and pymodbus's real
Modbus TCP server. One set-up for the three stories (a reading reaches Device status; a desired value patched in
the API server reaches the register; the server's going and coming back is the device's offline and online).
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.fixtures.modbus import ModbusServer
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.support import devices
from tests.support.cluster import node_names
from tests.support.devices import GROUP, VERSION

pytestmark = pytest.mark.slow

DEVICE = "boiler-1"
TEMPERATURE = 10  # input registers 10-11: a float32 the device measures
SETPOINT = 20  # holding register 20: an int the cloud sets


def model() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeviceModel", "metadata": {"name": "boiler"},
            "spec": {"protocol": "modbus", "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly", "unit": "C"},
                {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"}]}}


def device(node: str, port: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Device", "metadata": {"name": DEVICE},
            "spec": {"deviceModelRef": {"name": "boiler"}, "nodeName": node,
                     "protocol": {"protocolName": "modbus",
                                  "configData": {"ip": "127.0.0.1", "port": port, "slaveID": 1}},
                     "properties": [
                         {"name": "temperature", "collectCycle": 500, "reportCycle": 500, "reportToCloud": True,
                          "visitors": {"protocolName": "modbus", "configData": {
                              "register": "InputRegister", "offset": TEMPERATURE, "limit": 2, "dataType": "float"}}},
                         {"name": "setpoint", "collectCycle": 500, "reportCycle": 500, "reportToCloud": True,
                          "desired": {"value": "25"},
                          "visitors": {"protocolName": "modbus", "configData": {
                              "register": "HoldingRegister", "offset": SETPOINT, "limit": 1}}}],
                     "methods": [{"name": "adjust", "description": "set the boiler", "propertyNames": ["setpoint"]}]}}


def status(api: k8s.ApiClient, namespace: str) -> dict[str, Any]:
    return devices.status(api, namespace, DEVICE)


def reported(api: k8s.ApiClient, namespace: str, prop: str) -> str | None:
    return devices.reported(api, namespace, prop, DEVICE)


def float_words(value: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


@pytest.fixture
def mapper_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mapper-", dir="/tmp"))  # a Unix socket's path must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def call(url: str, verb: str = "GET") -> tuple[int, dict[str, Any]]:
    """The mapper's method API: (status, JSON body), errors included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=verb), timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_modbus_mapper_serves_a_device_from_the_api_server(cluster_factory: Any, modbus_server: ModbusServer,
                                                               mapper_dir: Path, tmp_path: Path) -> None:
    (node,) = node_names(1)
    cluster = cluster_factory([node])
    edge, _link = cluster.nodes[node]
    edge.start("dmi")
    api, ns = cluster.api.client, cluster.namespace
    custom = k8s.CustomObjectsApi(api)
    wait_until(lambda: devices.crds_ready(api), timeout=60, what="the devices.kubeedge.io CRDs")
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devicemodels", model())
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devices", device(node, modbus_server.port))
    modbus_server.set_holding(TEMPERATURE, float_words(21.5))

    api_port = free_port()
    mapper = ManagedProcess("mapper-modbus", [
        sys.executable, "-m", "edgehive", "mapper", "modbus", "--dmi-socket", str(edge.dmi_socket),
        "--socket", str(mapper_dir / "modbus.sock"), "--register-timeout-s", "30",
        "--api-listen", f"127.0.0.1:{api_port}"], tmp_path / "mapper-modbus.log")
    mapper.start()
    try:
        # The desired value the Device came with is written; the readings and the state reach Device status.
        wait_until(lambda: modbus_server.holding(SETPOINT) == [25], timeout=60, what="setpoint 25 in the register",
                   alive=mapper)
        wait_until(lambda: reported(api, ns, "temperature") == "21.500000" and reported(api, ns, "setpoint") == "25"
                   and status(api, ns).get("state") == "online", timeout=60,
                   what="temperature 21.5, setpoint 25 and online in the Device status", alive=mapper)

        # (1) The device measures something else: the new value reaches the Device status.
        modbus_server.set_holding(TEMPERATURE, float_words(-3.25))
        wait_until(lambda: reported(api, ns, "temperature") == "-3.250000", timeout=30,
                   what="temperature -3.25 in the Device status", alive=mapper)

        # (2) A desired value patched in the API server reaches the register, and comes back as reported.
        # (A merge patch, as `kubectl patch --type merge` sends it: a list is replaced whole.)
        properties = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "devices", DEVICE)["spec"]["properties"]
        properties[1]["desired"]["value"] = "30"
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "devices", DEVICE,
                                              {"spec": {"properties": properties}})
        wait_until(lambda: modbus_server.holding(SETPOINT) == [30], timeout=30, what="setpoint 30 in the register",
                   alive=mapper)
        wait_until(lambda: reported(api, ns, "setpoint") == "30", timeout=30,
                   what="setpoint 30 reported in the Device status", alive=mapper)

        # (2b) The device's method, called on the mapper's API as KubeEdge's mappers serve it, writes the register.
        methods = f"http://127.0.0.1:{api_port}/api/v1/devicemethod/{ns}/{DEVICE}"
        assert call(methods) == (200, {"Data": {"Methods": [{
            "Name": "adjust", "Path": f"/api/v1/devicemethod/{ns}/{DEVICE}/adjust/{{propertyName}}/{{data}}",
            "Parameters": [{"PropertyName": "setpoint", "ValueType": "int"}]}]}})
        code, body = call(f"{methods}/adjust/setpoint/33", "PUT")
        assert (code, body["statusCode"]) == (200, 200), body
        wait_until(lambda: modbus_server.holding(SETPOINT) == [33], timeout=30, what="setpoint 33 from the method",
                   alive=mapper)
        wait_until(lambda: reported(api, ns, "setpoint") == "33", timeout=30,
                   what="setpoint 33 reported in the Device status", alive=mapper)
        # Refusals name what is wrong and write nothing.
        for path, status_code, why in (("adjust/temperature/5", 400, "does not control property 'temperature'"),
                                       ("adjust/setpoint/hot", 400, "property setpoint"),
                                       ("open/setpoint/1", 404, "no method 'open'")):
            code, body = call(f"{methods}/{path}")
            assert (code, body["statusCode"]) == (status_code, status_code), body
            assert why in body["Message"], body
        assert modbus_server.holding(SETPOINT) == [33]

        # (3) The server goes away: offline; it comes back (empty, as a rebooted device): online, and read again.
        modbus_server.stop()
        wait_until(lambda: status(api, ns).get("state") == "offline", timeout=30,
                   what="the device offline in the Device status", alive=mapper)
        modbus_server.start()
        modbus_server.set_holding(TEMPERATURE, float_words(19.0))
        wait_until(lambda: status(api, ns).get("state") == "online"
                   and reported(api, ns, "temperature") == "19.000000", timeout=60,
                   what="the device online again, temperature 19 in the Device status", alive=mapper)
        assert mapper.returncode() is None
        mapper.stop()  # SIGTERM: the mapper closes its devices and socket and exits cleanly
        assert mapper.returncode() == 0
        assert not (mapper_dir / "modbus.sock").exists()
    finally:
        mapper.stop()
