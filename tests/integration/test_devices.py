"""Devices end to end: KubeEdge manifests in the API server, a plain MQTT client as the device."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from kubernetes import client as k8s

from schemas import kinds
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support import devices
from tests.support.cluster import Cluster, node_names
from tests.support.devices import DEVICE, GROUP, VERSION, next_json, reading


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


def _device_rv_on_node(cluster: Cluster, node: str) -> str | None:
    """The Device's resourceVersion in the node's store (MetaManager's SQLite file, read-only beside it)."""
    edge, _link = cluster.nodes[node]
    with sqlite3.connect(f"file:{edge.data / 'meta.db'}?mode=ro", uri=True, timeout=5) as db:
        rows = [rv for (key, rv) in db.execute("SELECT key, rv FROM resource WHERE kind = ?", (kinds.DEVICE,))
                if key.endswith("/" + DEVICE)]
    return rows[0] if rows else None


def _device_rv(cluster: Cluster) -> str:
    obj = custom(cluster).get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "devices", DEVICE)
    return str(obj["metadata"]["resourceVersion"])


def test_status_writes_are_not_echoed_to_the_node_and_a_spec_change_brings_the_newest(cluster_factory: Any) -> None:
    """The node's own reports, written into the Device status, do not come back down the link as new Device
    versions; the next spec change does, at the newest version (status included)."""
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    apply(cluster, node)
    created = _device_rv(cluster)
    wait_until(lambda: _device_rv_on_node(cluster, node) == created, timeout=30, what="the Device on the node")
    with device_client(cluster, node) as dev:
        for i in range(5):
            dev.publish(topic(cluster, "twin/update"), reading(f"e{i}", f"3{i}.5"))
            value = f"3{i}.5"
            wait_until(lambda: reported(cluster, "temperature") == value, timeout=15,  # noqa: B023 (waited here)
                       what=f"reading {i} in the Device status")
    written = _device_rv(cluster)
    assert int(written) > int(created), "the readings were written into the Device status"
    # A later spec change is delivered; the store must still hold the created version until then.
    assert _device_rv_on_node(cluster, node) == created
    custom(cluster).patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "devices", DEVICE, {
        "spec": {"properties": [{"name": "setpoint", "desired": {"value": "30"}},
                                {"name": "temperature", "reportToCloud": True}]}})
    patched = _device_rv(cluster)
    wait_until(lambda: _device_rv_on_node(cluster, node) == patched, timeout=30,
               what="the spec change, at the Device's newest version, on the node")


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
