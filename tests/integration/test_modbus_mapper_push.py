"""`edgehive mapper modbus` pushing collected values by a property's pushMethod, on real parts: a Device with
pushMethod in the real API server, a real edge node's DMI, the mapper process, pymodbus's Modbus TCP server, a
real mosquitto broker and a real HTTP server on loopback. A pushMethod the mapper cannot honour is refused by
field, and the device goes on with its previous settings."""

from __future__ import annotations

import re
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.fixtures.brokers import Broker
from tests.fixtures.modbus import ModbusServer
from tests.fixtures.mqtt import MqttError, TestClient
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support import devices
from tests.support.cluster import node_names
from tests.support.devices import GROUP, VERSION

pytestmark = pytest.mark.slow

DEVICE = "meter-1"
TEMPERATURE = 10  # input registers 10-11: a float32
SETPOINT = 20  # holding register 20: an int
TOPIC = "plant/meter-1/temperature"
CLOCK = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


class Posts:
    """A real HTTP server on loopback that keeps what is POSTed to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        posts = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with posts.lock:
                    posts.received.append((self.path, self.headers.get("Content-Type") or "", body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def posts() -> Iterator[Posts]:
    server = Posts()
    yield server
    server.close()


@pytest.fixture
def mapper_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mapper-", dir="/tmp"))  # a Unix socket's path must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def model() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeviceModel", "metadata": {"name": "meter"},
            "spec": {"protocol": "modbus", "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
                {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"}]}}


def properties(broker: Broker, http_port: int) -> list[dict[str, Any]]:
    return [{"name": "temperature", "collectCycle": 300, "reportCycle": 300, "reportToCloud": True,
             "pushMethod": {"mqtt": {"address": f"tcp://{broker.host}:{broker.port}", "topic": TOPIC, "qos": 1,
                                     "retained": True}},
             "visitors": {"protocolName": "modbus", "configData": {
                 "register": "InputRegister", "offset": TEMPERATURE, "limit": 2, "dataType": "float"}}},
            {"name": "setpoint", "collectCycle": 300, "reportCycle": 300, "reportToCloud": True,
             "pushMethod": {"http": {"hostName": "http://127.0.0.1", "port": http_port, "requestPath": "/readings",
                                     "timeout": 2000}},
             "visitors": {"protocolName": "modbus", "configData": {
                 "register": "HoldingRegister", "offset": SETPOINT, "limit": 1}}}]


def device(node: str, modbus_port: int, props: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Device", "metadata": {"name": DEVICE},
            "spec": {"deviceModelRef": {"name": "meter"}, "nodeName": node,
                     "protocol": {"protocolName": "modbus",
                                  "configData": {"ip": "127.0.0.1", "port": modbus_port, "slaveID": 1}},
                     "properties": props}}


def float_words(value: float) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


def next_push(client: TestClient, value: str, timeout: float = 20) -> str:
    """The next message on TOPIC that carries ``value``, as the mapper framework words it."""
    pattern = re.compile(rf"time is {CLOCK}  {re.escape(TOPIC)}: {re.escape(value)}")
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = client.expect(timeout=left)
        except MqttError:
            break
        text = message.payload.decode()
        if message.topic == TOPIC and pattern.fullmatch(text):
            return text
        seen.append(text)
    raise AssertionError(f"{value} was not pushed on {TOPIC} within {timeout} s; seen: {seen[-5:]}")


def posted(posts: Posts, value: str) -> Callable[[], bool]:
    pattern = re.compile(rf"setpoint={re.escape(value)}&time={CLOCK}")
    return lambda: any(path == "/readings" and kind == "application/x-www-form-urlencoded" and pattern.fullmatch(body)
                       for path, kind, body in posts.bodies())


def test_collected_values_are_pushed_by_mqtt_and_http(cluster_factory: Any, modbus_server: ModbusServer,
                                                      mosquitto_broker: Any, posts: Posts, mapper_dir: Path,
                                                      tmp_path: Path) -> None:
    broker: Broker = mosquitto_broker()
    (node,) = node_names(1)
    cluster = cluster_factory([node])
    edge, _link = cluster.nodes[node]
    edge.start("dmi")
    api, ns = cluster.api.client, cluster.namespace
    custom = k8s.CustomObjectsApi(api)
    wait_until(lambda: devices.crds_ready(api), timeout=60, what="the devices.kubeedge.io CRDs")
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devicemodels", model())
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devices",
                                           device(node, modbus_server.port, properties(broker, posts.port)))
    modbus_server.set_holding(TEMPERATURE, float_words(21.5))
    modbus_server.set_holding(SETPOINT, [7])
    log = tmp_path / "mapper-modbus.log"
    mapper = ManagedProcess("mapper-modbus", [
        sys.executable, "-m", "edgehive", "mapper", "modbus", "--dmi-socket", str(edge.dmi_socket),
        "--socket", str(mapper_dir / "modbus.sock"), "--register-timeout-s", "30"], log)
    with TestClient(broker.host, broker.port) as sink:
        sink.subscribe(TOPIC)
        mapper.start()
        try:
            # Each collected value goes to the property's broker and topic, and to its HTTP endpoint.
            next_push(sink, "21.500000", timeout=60)
            wait_until(posted(posts, "7"), timeout=30, what="setpoint=7 POSTed to /readings", alive=mapper)
            modbus_server.set_holding(TEMPERATURE, float_words(-3.25))
            modbus_server.set_holding(SETPOINT, [9])
            next_push(sink, "-3.250000")
            wait_until(posted(posts, "9"), timeout=30, what="setpoint=9 POSTed to /readings", alive=mapper)
            # ... and reaches the Device status as before: a push is besides the report, not instead of it.
            wait_until(lambda: devices.reported(api, ns, "temperature", DEVICE) == "-3.250000", timeout=30,
                       what="temperature in the Device status", alive=mapper)
            # retained: a subscriber that comes later gets the last value at once.
            with TestClient(broker.host, broker.port) as late:
                late.subscribe(TOPIC)
                assert late.expect(timeout=10).retain

            # A database push is not something this mapper does: the device is refused, by field, and keeps
            # being served with its previous settings.
            changed = properties(broker, posts.port)
            changed[0]["pushMethod"] = {"dbMethod": {"influxdb2": {
                "influxdb2ClientConfig": {"url": "http://influx:8086", "org": "o", "bucket": "b"}}}}
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "devices", DEVICE,
                                                  {"spec": {"properties": changed}})
            wait_until(lambda: "properties[temperature].pushMethod.dbMethod.influxdb2: writing to a database is "
                               "not done by this mapper" in log.read_text(), timeout=30,
                       what="the refusal naming the field in the mapper's log", alive=mapper)
            modbus_server.set_holding(TEMPERATURE, float_words(4.5))
            next_push(sink, "4.500000")
        finally:
            mapper.stop()
    assert mapper.returncode() == 0
