"""Devices on other hosts: an edge broker listener of their own, with users, limited to KubeEdge's device topics."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from broker.embedded import BrokerSettings
from broker.launch import broker_argv
from broker.passwords import set_password
from tests.fixtures.mqtt import MqttError, TestClient, mqtt_ready
from tests.fixtures.processes import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow

TWIN = "$hw/events/device/default/thermo-1/twin/update"


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_device_listener(tmp_path: Path, kind: str) -> None:
    passwd = tmp_path / "devices"
    set_password(passwd, "thermo", "s3cret")
    local, devices = free_port(), free_port()
    settings = BrokerSettings(listen=(f"127.0.0.1:{local}",), device_listen=f"127.0.0.1:{devices}",
                              device_password_file=str(passwd))
    broker = ManagedProcess("edge-broker", broker_argv(kind, settings, tmp_path), tmp_path / "broker.log").start()
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
            # The node's own traffic is not a device's business: amqtt refuses the subscription; mosquitto
            # grants it to MQTT 3.1.1 clients and delivers nothing (checked below).
            with contextlib.suppress(MqttError):
                device.subscribe("edgehive/#")
            device.publish("edgehive/edge/metamanager/from-cloud", b"forged")
            device.publish(TWIN, b'{"event_id": "1"}')
            message = component.expect()
            assert (message.topic, message.payload) == (TWIN, b'{"event_id": "1"}')  # the forged one never came
            device.subscribe("$hw/events/device/default/thermo-1/twin/update/delta")
            component.publish("edgehive/edge/edged", b"not for devices")
            component.publish("$hw/events/device/default/thermo-1/twin/update/delta", b"delta")
            assert device.expect().payload == b"delta"  # and not the node's message before it
    finally:
        broker.stop()
