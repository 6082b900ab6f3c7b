"""A twin's type at a real edge node: from the Device's desired.metadata.type and its DeviceModel, read by a
plain MQTT client through KubeEdge's twin get, and a reported value of the wrong type refused in KubeEdge's
words; the membership update carries null for its empty side, as KubeEdge's edge sends it; a property with
reportToCloud: false stays at the edge."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

from schemas import twin
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster, node_names
from tests.support.devices import GROUP, VERSION, crds_ready, next_json


def lamp_model() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeviceModel", "metadata": {"name": "lamp-model"},
            "spec": {"protocol": "modbus", "properties": [{"name": "power", "type": "BOOLEAN",
                                                           "accessMode": "ReadWrite"}]}}


def lamp(node: str) -> dict[str, Any]:
    """The issue's device: desired {value: "true", metadata: {type: boolean}} on a BOOLEAN property."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Device", "metadata": {"name": "lamp"},
            "spec": {"deviceModelRef": {"name": "lamp-model"}, "nodeName": node,
                     "protocol": {"protocolName": "modbus"},
                     "properties": [{"name": "power", "desired": {"value": "true", "metadata": {"type": "boolean"}}},
                                    {"name": "secret", "reportToCloud": False}]}}


def test_twin_type_at_the_edge_and_a_wrong_reading_refused(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    edge, _link = cluster.nodes[node]
    custom = k8s.CustomObjectsApi(cluster.api.client)
    device = f"$hw/events/device/{cluster.namespace}/lamp"
    membership = f"$hw/events/node/{node}/membership/updated"
    with TestClient(edge.edge_broker.host, edge.edge_broker.port) as dev:
        dev.subscribe(membership)
        dev.subscribe(f"{device}/twin/get/result")
        dev.subscribe(f"{device}/twin/update/result")
        wait_until(lambda: crds_ready(cluster.api.client), timeout=60, what="the devices.kubeedge.io CRDs")
        # The Device first: the type must not depend on which object reaches the node first.
        custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "devices", lamp(node))
        custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "devicemodels", lamp_model())

        added = next_json(dev, membership, timeout=30)
        assert added["added_devices"] == [{"id": f"{cluster.namespace}/lamp", "name": "lamp"}]
        assert added["removed_devices"] is None

        def power_twin() -> dict[str, Any] | None:
            dev.publish(f"{device}/twin/get", json.dumps({"event_id": "get"}).encode())
            answer = next_json(dev, f"{device}/twin/get/result", timeout=5)
            return dict(answer["twin"]["power"]) if "power" in answer.get("twin", {}) else None

        wait_until(lambda: (power_twin() or {}).get("metadata") == {"type": "boolean"}, timeout=30,
                   what="the power twin typed boolean at the edge")
        got = power_twin()
        assert got is not None
        assert got["expected"]["value"] == "true"
        assert set(got) == {"expected", "optional", "metadata"}  # KubeEdge's MsgTwin, no versions

        dev.publish(f"{device}/twin/update", json.dumps(
            {"event_id": "wrong", "twin": {"power": {"actual": {"value": "on"}}}}).encode())
        refused = next_json(dev, f"{device}/twin/update/result")
        assert refused["event_id"] == "wrong"
        assert (refused["code"], refused["reason"]) == (400, twin.REASON_NOT_BOOL)
        assert set(refused) == {"event_id", "timestamp", "code", "reason"}

        dev.publish(f"{device}/twin/update", json.dumps(
            {"event_id": "right", "twin": {"power": {"actual": {"value": "true"}},
                                           "secret": {"actual": {"value": "42"}}}}).encode())
        accepted = next_json(dev, f"{device}/twin/update/result")
        assert accepted["twin"]["power"]["actual"]["value"] == "true"
        assert accepted["twin"]["power"]["metadata"] == {"type": "boolean"}
    # The Device status in the API server carries the type with the reported value; the property with
    # reportToCloud: false, reported in the same message, stays at the edge.
    def reported(prop: str) -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "devices", "lamp")
        for t in (obj.get("status") or {}).get("twins") or []:
            if t.get("propertyName") == prop and "reported" in t:
                return dict(t["reported"])
        return None

    wait_until(lambda: reported("power") is not None, timeout=20, what="the reported power in the Device status")
    status = reported("power")
    assert status is not None
    assert (status["value"], status["metadata"]["type"]) == ("true", "boolean")
    assert reported("secret") is None
