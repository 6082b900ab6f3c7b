"""What edge nodes report up: each report parses as EdgeD and DeviceTwin send it, and a bad field is named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edge.edged.node import node_object, node_status
from schemas.fields import BodyError
from schemas.kubeobj import ObjectMeta
from schemas.reports import DeviceStatusReport, NodeRegistration, NodeStatus, PodStatusReport


def changed(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``path`` (keys and list indexes, dotted) set to ``value``."""
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    target: Any = out
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return out


# -- nodes ------------------------------------------------------------------------------------------------

STATUS = {"status": node_status("10.0.0.5", True, "podman is ready", 1_700_000_000.0)}


def test_edged_node_status_parses() -> None:
    status = NodeStatus.parse_report(STATUS)
    assert [c["type"] for c in status.conditions] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert set(status.fields) == {"capacity", "allocatable", "addresses", "nodeInfo"}
    assert status.fields["addresses"][0] == {"type": "InternalIP", "address": "10.0.0.5"}
    assert NodeStatus.parse_report({"status": {}}) == NodeStatus([], {})


@pytest.mark.parametrize(("path", "value", "field"), [
    ("status", 5, "body.status"),
    ("status", None, "body.status"),
    ("status.conditions", {"Ready": "True"}, "body.status.conditions"),
    ("status.conditions.0", "Ready", "body.status.conditions[0]"),
    ("status.conditions.1.type", None, "body.status.conditions[1].type"),
    ("status.conditions.0.status", True, "body.status.conditions[0].status"),
    ("status.capacity", ["cpu"], "body.status.capacity"),
    ("status.capacity.cpu", 4, "body.status.capacity.cpu"),
    ("status.allocatable", {"cpu": "4", "memory": None}, "body.status.allocatable.memory"),
    ("status.addresses", {"InternalIP": "x"}, "body.status.addresses"),
    ("status.addresses.1.address", 5, "body.status.addresses[1].address"),
    ("status.nodeInfo", "linux", "body.status.nodeInfo"),
])
def test_node_status_names_the_bad_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(BodyError) as refused:
        NodeStatus.parse_report(changed(STATUS, path, value))
    assert refused.value.field == field


def test_node_status_body_must_be_a_map() -> None:
    for body in (None, [1], "status"):
        with pytest.raises(BodyError) as refused:
            NodeStatus.parse_report(body)
        assert refused.value.field == "body"


REGISTRATION = node_object("edge-1", "10.0.0.5", True, "podman is ready")


def test_edged_registration_parses() -> None:
    registration = NodeRegistration.parse(REGISTRATION)
    assert registration.name == "edge-1"
    assert registration.labels["node-role.kubernetes.io/edge"] == ""
    assert registration.status is not None
    assert registration.status.conditions[-1]["type"] == "Ready"
    bare = NodeRegistration.parse({"metadata": {"name": "edge-1"}})
    assert (bare.labels, bare.status) == ({}, None)
    assert NodeRegistration.parse({}).name is None


@pytest.mark.parametrize(("path", "value", "field"), [
    ("metadata", "edge-1", "body.metadata"),
    ("metadata.name", 5, "body.metadata.name"),
    ("metadata.labels", ["a"], "body.metadata.labels"),
    ("metadata.labels.kubernetes.io/os", 1, "body.metadata.labels.kubernetes.io/os"),
    ("status", [1], "body.status"),
    ("status.conditions", 5, "body.status.conditions"),
])
def test_registration_names_the_bad_field(path: str, value: Any, field: str) -> None:
    if path.startswith("metadata.labels."):  # a label key holds dots of its own
        body = copy.deepcopy(REGISTRATION)
        body["metadata"]["labels"][path.removeprefix("metadata.labels.")] = value
    else:
        body = changed(REGISTRATION, path, value)
    with pytest.raises(BodyError) as refused:
        NodeRegistration.parse(body)
    assert refused.value.field == field
    with pytest.raises(BodyError) as refused:
        NodeRegistration.parse(5)
    assert refused.value.field == "body"


# -- pods -------------------------------------------------------------------------------------------------

POD_STATUS = {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
              "status": {"phase": "Running", "podIP": "10.88.0.2", "podIPs": [{"ip": "10.88.0.2"}],
                         "hostIP": "10.0.0.5", "conditions": [{"type": "Ready", "status": "True"}],
                         "containerStatuses": [{"name": "c", "state": {"running": {}}, "lastState": {},
                                                "ready": True, "restartCount": 0}]}}


def test_pod_status_round_trip() -> None:
    report = PodStatusReport.parse(POD_STATUS)
    assert (report.name, report.namespace, report.uid) == ("web", "default", "u-1")
    assert report.to_body() == POD_STATUS  # the same keys and values on the wire
    assert report.conditions == [{"type": "Ready", "status": "True"}]
    assert not report.all_stopped
    stopped = changed(POD_STATUS, "status.containerStatuses.0.state", {"terminated": {"exitCode": 0}})
    assert PodStatusReport.parse(stopped).all_stopped
    only_uid = PodStatusReport.parse({"metadata": {"uid": "u-1"}, "status": {"phase": "Failed"}})
    assert (only_uid.name, only_uid.uid) == (None, "u-1")
    assert PodStatusReport.parse({"status": {}}).uid is None


def test_pod_status_body_as_edged_builds_it() -> None:
    meta = ObjectMeta(name="web", namespace="default")
    body = PodStatusReport(meta.name, meta.namespace, meta.uid, {"phase": "Pending"}).to_body()
    assert body == {"metadata": {"name": "web", "namespace": "default", "uid": None}, "status": {"phase": "Pending"}}


@pytest.mark.parametrize(("path", "value", "field"), [
    ("metadata", [1], "body.metadata"),
    ("metadata.uid", 5, "body.metadata.uid"),
    ("status", None, "body.status"),
    ("status", "Running", "body.status"),
    ("status.phase", 1, "body.status.phase"),
    ("status.podIP", ["10.88.0.2"], "body.status.podIP"),
    ("status.podIPs", "10.88.0.2", "body.status.podIPs"),
    ("status.conditions", {}, "body.status.conditions"),
    ("status.conditions.0.type", 5, "body.status.conditions[0].type"),
    ("status.containerStatuses", {"c": {}}, "body.status.containerStatuses"),
    ("status.containerStatuses.0", 5, "body.status.containerStatuses[0]"),
    ("status.containerStatuses.0.state", 5, "body.status.containerStatuses[0].state"),
    ("status.containerStatuses.0.lastState", [], "body.status.containerStatuses[0].lastState"),
    ("status.containerStatuses.0.name", {}, "body.status.containerStatuses[0].name"),
])
def test_pod_status_names_the_bad_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(BodyError) as refused:
        PodStatusReport.parse(changed(POD_STATUS, path, value))
    assert refused.value.field == field


# -- devices ----------------------------------------------------------------------------------------------

DEVICE_STATUS = {"status": {"state": "online", "lastOnlineTime": "2026-01-01T00:00:00Z", "twins": [
    {"propertyName": "temperature", "reported": {"value": "23.5", "metadata": {"timestamp": "1", "type": "float"}}},
    {"propertyName": "setpoint", "observedDesired": {"value": "25", "metadata": {"version": "10"}}}]}}


def test_device_status_parses() -> None:
    report = DeviceStatusReport.parse(DEVICE_STATUS)
    assert (report.state, report.last_online_time) == ("online", "2026-01-01T00:00:00Z")
    temperature, setpoint = report.twins
    assert (temperature.property_name, temperature.reported) == ("temperature", "23.5")
    assert temperature.reported_metadata == {"timestamp": "1", "type": "float"}
    assert temperature.without_reported() == {"propertyName": "temperature"}
    assert (setpoint.reported, setpoint.entry) == (None, DEVICE_STATUS["status"]["twins"][1])
    assert DeviceStatusReport.parse({"status": {}}) == DeviceStatusReport(None, None, [])


@pytest.mark.parametrize(("path", "value", "field"), [
    ("status", 5, "body.status"),
    ("status", None, "body.status"),
    ("status.state", 1, "body.status.state"),
    ("status.lastOnlineTime", [], "body.status.lastOnlineTime"),
    ("status.twins", {"temperature": "1"}, "body.status.twins"),
    ("status.twins.0", "temperature", "body.status.twins[0]"),
    ("status.twins.0.propertyName", None, "body.status.twins[0].propertyName"),
    ("status.twins.1.propertyName", 5, "body.status.twins[1].propertyName"),
    ("status.twins.0.reported", "23.5", "body.status.twins[0].reported"),
    ("status.twins.0.reported.value", 23.5, "body.status.twins[0].reported.value"),
    ("status.twins.0.reported.metadata", "x", "body.status.twins[0].reported.metadata"),
    ("status.twins.0.reported.metadata.timestamp", 1, "body.status.twins[0].reported.metadata.timestamp"),
    ("status.twins.1.observedDesired", [], "body.status.twins[1].observedDesired"),
    ("status.twins.1.observedDesired.value", 25, "body.status.twins[1].observedDesired.value"),
])
def test_device_status_names_the_bad_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(BodyError) as refused:
        DeviceStatusReport.parse(changed(DEVICE_STATUS, path, value))
    assert refused.value.field == field


def test_device_status_view_of_a_device_never_raises() -> None:
    assert DeviceStatusReport.view({**DEVICE_STATUS, "spec": {}}).state == "online"
    for junk in (None, 5, {"status": 5}, {"status": {"twins": [5, {"propertyName": 3, "reported": 1}]}}):
        view = DeviceStatusReport.view(junk)
        assert view.state is None
    odd = DeviceStatusReport.view({"status": {"twins": [5, {"propertyName": 3, "reported": 1}]}})
    assert [(t.property_name, t.reported) for t in odd.twins] == [("", None)]
