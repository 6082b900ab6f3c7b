"""Devices on other hosts: an edge broker listener of their own, with users, limited to KubeEdge's device topics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.passwords import set_password
from tests.fixtures.mqtt import MqttError, TestClient, mqtt_ready
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow

TWIN = "$hw/events/device/default/thermo-1/twin/update"


def test_device_listener(tmp_path: Path) -> None:
    passwd = tmp_path / "devices"
    set_password(passwd, "thermo", "s3cret")
    local, devices = free_port(), free_port()
    broker = ManagedProcess("edge-broker", [
        sys.executable, "-m", "broker", "--listen", f"127.0.0.1:{local}", "--device-listen", f"127.0.0.1:{devices}",
        "--device-password-file", str(passwd)], tmp_path / "broker.log").start()
    try:
        wait_until(lambda: mqtt_ready("127.0.0.1", local, None, None), timeout=20, what="the edge broker",
                   alive=broker)
        with pytest.raises(MqttError):
            TestClient("127.0.0.1", devices, timeout=3).connect().close()  # anonymous
        with pytest.raises(MqttError):
            TestClient("127.0.0.1", devices, username="thermo", password="wrong", timeout=3).connect().close()
        with (TestClient("127.0.0.1", local) as component,
              TestClient("127.0.0.1", devices, username="thermo", password="s3cret") as device):
            component.subscribe("$hw/events/#")
            component.subscribe("edgehive/#")
            with pytest.raises(MqttError):
                device.subscribe("edgehive/#")  # the node's own traffic is not a device's business
            device.publish("edgehive/edge/metamanager/from-cloud", b"forged")
            device.publish(TWIN, b'{"event_id": "1"}')
            message = component.expect()
            assert (message.topic, message.payload) == (TWIN, b'{"event_id": "1"}')  # the forged one never came
            device.subscribe("$hw/events/device/default/thermo-1/twin/update/delta")
            component.publish("$hw/events/device/default/thermo-1/twin/update/delta", b"delta")
            assert device.expect().payload == b"delta"
    finally:
        broker.stop()
