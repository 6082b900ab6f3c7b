"""A KubeEdge DeviceModel and Device in the API server, and a device speaking KubeEdge's twin JSON over MQTT."""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until

GROUP, VERSION = "devices.kubeedge.io", "v1beta1"
DEVICE = "thermo-1"


def model(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeviceModel", "metadata": {"name": name},
            "spec": {"protocol": "modbus", "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly", "minimum": "-40",
                 "maximum": "125", "unit": "C"},
                {"name": "setpoint", "type": "INT", "accessMode": "ReadWrite"}]}}


def device(name: str, node: str, setpoint: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Device", "metadata": {"name": name},
            "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": node, "protocol": {"protocolName": "modbus"},
                     "properties": [{"name": "setpoint", "desired": {"value": setpoint}},
                                    {"name": "temperature", "reportToCloud": True}]}}


def apply(api: k8s.ApiClient, namespace: str, node: str, setpoint: str = "25") -> None:
    """The model ``thermo`` and the device ``thermo-1`` on ``node``, once DeviceController installed the CRDs."""
    custom = k8s.CustomObjectsApi(api)
    wait_until(lambda: crds_ready(api), timeout=60, what="the devices.kubeedge.io CRDs")
    wait_until(lambda: custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "devicemodels",
                                                             model("thermo")), timeout=20, what="the DeviceModel")
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "devices", device(DEVICE, node, setpoint))


def crds_ready(api: k8s.ApiClient) -> bool:
    ext = k8s.ApiextensionsV1Api(api)
    for name in ("devices.devices.kubeedge.io", "devicemodels.devices.kubeedge.io"):
        try:
            crd = ext.read_custom_resource_definition(name)
        except k8s.exceptions.ApiException:
            return False
        if not any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return False
    return True


def status(api: k8s.ApiClient, namespace: str, device: str = DEVICE) -> dict[str, Any]:
    obj = k8s.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "devices", device)
    return dict(obj.get("status") or {})


def reported(api: k8s.ApiClient, namespace: str, prop: str, device: str = DEVICE) -> str | None:
    for twin in status(api, namespace, device).get("twins") or []:
        if twin.get("propertyName") == prop and "reported" in twin:
            return str(twin["reported"]["value"])
    return None


def topic(namespace: str, suffix: str) -> str:
    return f"$hw/events/device/{namespace}/{DEVICE}/{suffix}"


def reading(event: str, value: str) -> bytes:
    return json.dumps({"event_id": event, "timestamp": int(time.time() * 1000),
                       "twin": {"temperature": {"actual": {"value": value}, "metadata": {"type": "float"}}}}).encode()


def next_json(client: TestClient, topic_name: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = client.expect(timeout=max(0.1, deadline - time.monotonic()))
        if message.topic == topic_name and message.payload:
            return dict(json.loads(message.payload))
    raise AssertionError(f"nothing on {topic_name} within {timeout} s")
