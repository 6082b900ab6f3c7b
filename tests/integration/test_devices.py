"""Devices end to end: KubeEdge manifests in the API server, a plain MQTT client as the device."""

from __future__ import annotations

import json
import time
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support import devices
from tests.support.cluster import Cluster, node_names
from tests.support.devices import GROUP, VERSION, next_json, reading


def custom(cluster: Cluster) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(cluster.api.client)


def apply(cluster: Cluster, node: str, setpoint: str = "25") -> None:
    devices.apply(cluster.api.client, cluster.namespace, node, setpoint)


def status(cluster: Cluster) -> dict[str, Any]:
    return devices.status(cluster.api.client, cluster.namespace)


def reported(cluster: Cluster, prop: str) -> str | None:
    return devices.reported(cluster.api.client, cluster.namespace, prop)


def device_client(cluster: Cluster, node: str, client_id: str = "") -> TestClient:
    edge, _link = cluster.nodes[node]
    return TestClient(edge.edge_broker.host, edge.edge_broker.port, client_id=client_id)


def topic(cluster: Cluster, suffix: str) -> str:
    return devices.topic(cluster.namespace, suffix)


def test_desired_value_down_readings_up(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    apply(cluster, node)
    with device_client(cluster, node) as dev:
        dev.subscribe(topic(cluster, "twin/update/delta"))
        delta = next_json(dev, topic(cluster, "twin/update/delta"))
        assert delta["delta"] == {"setpoint": "25"}
        assert delta["twin"]["setpoint"]["expected"]["value"] == "25"
        dev.subscribe(topic(cluster, "twin/update/result"))
        t0 = time.monotonic()
        for i in range(5):
            dev.publish(topic(cluster, "twin/update"), reading(f"r{i}", f"2{i}.5"))
        result = next_json(dev, topic(cluster, "twin/update/result"))
        assert result["event_id"] == "r0"
        assert result["twin"]["temperature"]["actual"]["value"] == "20.5"
        wait_until(lambda: reported(cluster, "temperature") == "24.5", timeout=10,
                   what="the last reading in the Device status")
        seen_after = time.monotonic() - t0
    twin = next(t for t in status(cluster)["twins"] if t["propertyName"] == "temperature")
    assert int(twin["reported"]["metadata"]["timestamp"]) > 0
    print(f"\nreading in the Device status {seen_after:.2f} s after it was published")


def test_offline_readings_and_state_converge(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    apply(cluster, node)
    _edge, link = cluster.nodes[node]
    with device_client(cluster, node) as dev:
        dev.subscribe(topic(cluster, "twin/update/delta"))
        next_json(dev, topic(cluster, "twin/update/delta"))  # the device is a member and has its delta
        link.down()
        for i in range(1000):
            dev.publish(topic(cluster, "twin/update"), reading(f"o{i}", f"{i % 100}.{i // 100}"), qos=0)
        dev.publish(topic(cluster, "state/update"), json.dumps({"event_id": "s", "state": "online"}).encode())
        dev.publish(topic(cluster, "twin/update"), reading("last", "99.9"))
    link.up()
    t0 = time.monotonic()
    wait_until(lambda: reported(cluster, "temperature") == "99.9" and status(cluster).get("state") == "online",
               timeout=30, what="the last offline reading and the state in the Device status")
    took = time.monotonic() - t0
    assert status(cluster).get("lastOnlineTime")
    print(f"\nDevice status converged {took:.1f} s after the link returned")


def test_retained_delta_reaches_a_device_that_was_away(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    apply(cluster, node)
    with device_client(cluster, node) as dev:
        dev.subscribe(topic(cluster, "twin/update/delta"))
        assert next_json(dev, topic(cluster, "twin/update/delta"))["delta"] == {"setpoint": "25"}
    custom(cluster).patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "devices", "thermo-1", {
        "spec": {"properties": [{"name": "setpoint", "desired": {"value": "30"}},
                                {"name": "temperature", "reportToCloud": True}]}})
    def delta_says_30() -> bool:
        with device_client(cluster, node) as fresh:  # a new session each time: only retained messages arrive
            fresh.subscribe(topic(cluster, "twin/update/delta"))
            return bool(next_json(fresh, topic(cluster, "twin/update/delta"), timeout=3)["delta"] == {"setpoint": "30"})

    wait_until(delta_says_30, timeout=30, what="the retained delta with the new setpoint")
    # Once the device applies it, no delta is sent (as KubeEdge) and the Device shows what was applied.
    with device_client(cluster, node) as dev:
        dev.publish(topic(cluster, "twin/update"), json.dumps({"event_id": "ack", "twin": {
            "setpoint": {"actual": {"value": "30"}}}}).encode())
    wait_until(lambda: any(t.get("propertyName") == "setpoint" and (t.get("observedDesired") or {}).get("value") == "30"
                           for t in status(cluster).get("twins") or []), timeout=15, what="observedDesired 30")


def test_bad_device_input_is_answered_and_stores_nothing(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    apply(cluster, node)
    with device_client(cluster, node) as dev:
        dev.subscribe(topic(cluster, "twin/update/delta"))
        next_json(dev, topic(cluster, "twin/update/delta"))
        dev.subscribe(topic(cluster, "twin/update/result"))
        ghost = f"$hw/events/device/{cluster.namespace}/ghost/twin/update"
        dev.subscribe(ghost + "/result")
        for payload, code in [(b"{oops", 400),
                              (json.dumps({"event_id": "n", "twin": {"bad name": {"actual": {"value": "1"}}}}).encode(),
                               400),
                              (json.dumps({"event_id": "v", "twin": {"temperature": {"actual": {
                                  "value": "9" * 600}}}}).encode(), 400)]:
            dev.publish(topic(cluster, "twin/update"), payload)
            answer = next_json(dev, topic(cluster, "twin/update/result"))
            assert answer["code"] == code
            assert set(answer) == {"event_id", "timestamp", "code", "reason"}
        dev.publish(ghost, reading("g", "1.0"))
        assert next_json(dev, ghost + "/result")["code"] == 404
    assert reported(cluster, "temperature") is None
    for process in cluster.nodes[node][0].processes.values():
        assert process.returncode() is None
