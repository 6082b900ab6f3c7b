"""DeviceController's Warning Event on a Device its node will refuse (cloud/devicecontroller/warnings.py)."""

from __future__ import annotations

from typing import Any, cast

from cloud.devicecontroller.warnings import REASON, warn_if_refused
from cloud.kube import Kube, KubeError
from tests.support.dmi import dmi_device


class Events:
    def __init__(self, status: int | None = None) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.status = status

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append((namespace, body))
        if self.status is not None:
            raise KubeError(self.status, "no")
        return body


def device(methods: list[dict[str, Any]]) -> dict[str, Any]:
    obj = dmi_device(namespace="ns1")
    obj["metadata"].update({"uid": "u-1", "resourceVersion": "42", "generation": 3})
    obj["spec"]["methods"] = methods
    return obj


def test_a_valid_device_gets_no_event() -> None:
    kube = Events()
    assert warn_if_refused(cast(Kube, kube), device([{"name": "m", "propertyNames": ["setpoint"]}])) is None
    assert kube.created == []


def test_a_refused_device_gets_one_warning_per_version_naming_the_field() -> None:
    kube = Events()
    why = warn_if_refused(cast(Kube, kube), device([{"name": "m", "propertyNames": ["ghost"]}]))
    assert why is not None
    assert why.field == "body.spec.methods[0].propertyNames[0]"
    ((namespace, body),) = kube.created
    assert namespace == "ns1"
    assert body["metadata"] == {"name": "thermo-1.invalid-u-1-3", "namespace": "ns1"}
    assert (body["type"], body["reason"]) == ("Warning", REASON)
    assert body["involvedObject"] == {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
                                      "name": "thermo-1", "namespace": "ns1", "uid": "u-1", "resourceVersion": "42"}
    assert "body.spec.methods[0].propertyNames[0]: 'ghost' is not one of the device's properties" in body["message"]


def test_a_failed_event_write_does_not_stop_the_reconcile() -> None:
    for status in (409, 403, 0):
        assert warn_if_refused(cast(Kube, Events(status)), device([{"name": "m", "propertyNames": ["x"]}]))


def test_status_writes_do_not_repeat_the_warning_a_new_spec_does() -> None:
    kube, checked = Events(), dict[tuple[str, str], str]()
    bad = device([{"name": "m", "propertyNames": ["ghost"]}])
    assert warn_if_refused(cast(Kube, kube), bad, checked) is not None
    bad["metadata"]["resourceVersion"] = "43"  # a status write: same generation
    assert warn_if_refused(cast(Kube, kube), bad, checked) is None
    bad["metadata"]["generation"] = 4  # a new spec, still bad
    assert warn_if_refused(cast(Kube, kube), bad, checked) is not None
    assert [b["metadata"]["name"] for _, b in kube.created] == ["thermo-1.invalid-u-1-3", "thermo-1.invalid-u-1-4"]
