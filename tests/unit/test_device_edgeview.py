"""DeviceController's test of which Device changes a node needs (cloud/devicecontroller/edgeview.py)."""

from __future__ import annotations

import copy
from typing import Any

from cloud.devicecontroller.edgeview import status_only
from cloud.packed import Packed


def _device() -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": "fan", "namespace": "default", "uid": "u1", "resourceVersion": "10",
                         "generation": 1, "labels": {"room": "a"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"nodeName": "edge-1", "deviceModelRef": {"name": "fan-model"},
                     "properties": [{"name": "speed", "desired": {"value": "3"}}]},
            "status": {"twins": [{"propertyName": "speed", "reported": {"value": "2"}}]}}


def test_a_status_write_is_not_for_the_node() -> None:
    before = _device()
    after = copy.deepcopy(before)
    after["metadata"]["resourceVersion"] = "11"
    after["metadata"]["managedFields"].append({"manager": "edgehive-devicecontroller", "operation": "Update"})
    after["status"] = {"twins": [{"propertyName": "speed", "reported": {"value": "3"}}], "state": "online"}
    assert status_only(Packed.of(before), after)


def test_spec_metadata_and_deletion_changes_are_for_the_node() -> None:
    before = Packed.of(_device())
    for change in ({"spec": "properties", "to": [{"name": "speed", "desired": {"value": "4"}}]},
                   {"spec": "nodeName", "to": "edge-2"},
                   {"metadata": "labels", "to": {"room": "b"}},
                   {"metadata": "deletionTimestamp", "to": "2026-12-04T20:00:00Z"}):
        after = _device()
        after["metadata"]["resourceVersion"] = "11"
        part = "spec" if "spec" in change else "metadata"
        after[part][change[part]] = change["to"]
        assert not status_only(before, after), change
