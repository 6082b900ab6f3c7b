"""DeviceController with ``--status-object devicestatus``: reports land in KubeEdge v1.23's DeviceStatus object.

Real kube-apiserver, cloud broker, CloudHub, DeviceController, one edge node; a plain MQTT client is the
device. The default (the Device's own status) is what tests/integration/test_devices.py exercises.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.support import devices
from tests.support.cluster import Cluster, node_names
from tests.support.devices import DEVICE, GROUP, VERSION, next_json, reading


def device_status(cluster: Cluster) -> dict[str, Any] | None:
    try:
        found = k8s.CustomObjectsApi(cluster.api.client).get_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "devicestatuses", DEVICE)
    except k8s.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(found)


def reported_in(obj: dict[str, Any] | None, prop: str) -> str | None:
    for twin in ((obj or {}).get("status") or {}).get("twins") or []:
        if twin.get("propertyName") == prop and "reported" in twin:
            return str(twin["reported"]["value"])
    return None


def test_reports_go_to_the_devicestatus_owned_by_the_device(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    cluster.cloud["devicecontroller"].stop()
    cluster.cloud["devicecontroller"] = ManagedProcess(
        "devicecontroller-devicestatus", [*cluster.cloud_argv("devicecontroller"), "--status-object", "devicestatus"],
        cluster.workdir / "devicecontroller-devicestatus.log").start()
    devices.apply(cluster.api.client, cluster.namespace, node)
    edge, _link = cluster.nodes[node]
    topic = devices.topic(cluster.namespace, "twin/update")
    with TestClient(edge.edge_broker.host, edge.edge_broker.port) as dev:
        dev.subscribe(devices.topic(cluster.namespace, "twin/update/delta"))
        next_json(dev, devices.topic(cluster.namespace, "twin/update/delta"))  # a member, with its delta
        dev.publish(topic, reading("r1", "21.5"))
        dev.publish(devices.topic(cluster.namespace, "state/update"),
                    json.dumps({"event_id": "s", "state": "online"}).encode())
        wait_until(lambda: reported_in(device_status(cluster), "temperature") == "21.5"
                   and ((device_status(cluster) or {}).get("status") or {}).get("state") == "online",
                   timeout=30, what="the reading and the state in the DeviceStatus")
        dev.publish(topic, reading("r2", "22.5"))
        wait_until(lambda: reported_in(device_status(cluster), "temperature") == "22.5", timeout=30,
                   what="the next reading in the same DeviceStatus")
    found = device_status(cluster)
    assert found is not None
    assert found["spec"] == {}
    assert found["status"]["lastOnlineTime"]
    owner = k8s.CustomObjectsApi(cluster.api.client).get_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "devices", DEVICE)
    assert found["metadata"]["ownerReferences"] == [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "Device",
                                                     "name": DEVICE, "uid": owner["metadata"]["uid"],
                                                     "controller": True}]
    # The Device itself is not rewritten on reports in this mode.
    assert not (owner.get("status") or {}).get("twins")
    assert devices.reported(cluster.api.client, cluster.namespace, "temperature") is None
