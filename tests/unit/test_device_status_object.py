"""DeviceController's --status-object: which object a report is written to, and a DeviceStatus made on first use.

The API server side (the CRD, the owner reference, the status subresource) is tested against a real
kube-apiserver in tests/integration/test_device_status_object.py; here, the choice and its order of calls.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from cloud.devicecontroller import statusobject
from cloud.devicecontroller.controller import DeviceControllerSettings
from cloud.devicecontroller.statusobject import StatusObject, owned_by
from cloud.kube import Kube, KubeError

DEVICE = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
          "metadata": {"name": "thermo-1", "namespace": "ns1", "uid": "u-1"}}
STATUS = {"twins": [{"propertyName": "t", "reported": {"value": "1"}}], "state": "online"}


class Recorder:
    """The two Kube calls StatusObject makes, recorded; the first ``missing`` DeviceStatus patches answer 404
    (the object is not there yet), a create answers ``create_status`` if given."""

    def __init__(self, missing: int = 0, create_status: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.missing = missing
        self.create_status = create_status

    def patch_custom_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("patch", kind, namespace, name, patch))
        if kind == "devicestatus" and self.missing > 0:
            self.missing -= 1
            raise KubeError(404, "not found")
        return {}

    def create_custom(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", kind, namespace, body))
        if self.create_status is not None:
            raise KubeError(self.create_status, "refused")
        return body


def writer(kube: Recorder, target: str) -> StatusObject:
    return StatusObject(cast(Kube, kube), target)


def test_default_is_the_device_status() -> None:
    kube = Recorder()
    writer(kube, DeviceControllerSettings().status_object).write(DEVICE, STATUS)
    assert kube.calls == [("patch", "device", "ns1", "thermo-1", {"status": STATUS})]


def test_devicestatus_is_made_owned_by_the_device_then_patched() -> None:
    kube = Recorder(missing=1)
    writer(kube, "devicestatus").write(DEVICE, STATUS)
    assert [c[0] for c in kube.calls] == ["patch", "create", "patch"]
    body = kube.calls[1][3]
    assert body["kind"] == "DeviceStatus"
    assert body["spec"] == {}
    assert (body["metadata"]["name"], body["metadata"]["namespace"]) == ("thermo-1", "ns1")
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
                                                    "name": "thermo-1", "uid": "u-1", "controller": True}]
    assert kube.calls[2] == ("patch", "devicestatus", "ns1", "thermo-1", {"status": STATUS})


def test_an_existing_devicestatus_is_only_patched() -> None:
    kube = Recorder()
    writer(kube, "devicestatus").write(DEVICE, STATUS)
    assert kube.calls == [("patch", "devicestatus", "ns1", "thermo-1", {"status": STATUS})]


def test_a_devicestatus_made_by_another_writer_meanwhile_still_gets_the_patch() -> None:
    kube = Recorder(missing=1, create_status=409)
    writer(kube, "devicestatus").write(DEVICE, STATUS)
    assert [c[0] for c in kube.calls] == ["patch", "create", "patch"]


def test_other_errors_are_raised_not_hidden() -> None:
    kube = Recorder(missing=1, create_status=403)
    with pytest.raises(KubeError) as caught:
        writer(kube, "devicestatus").write(DEVICE, STATUS)
    assert caught.value.status == 403


def test_a_devicestatus_crd_not_served_yet_is_transient() -> None:
    kube = Recorder(missing=1, create_status=404)
    with pytest.raises(KubeError) as caught:
        writer(kube, "devicestatus").write(DEVICE, STATUS)
    assert caught.value.status == 503


@pytest.mark.parametrize("bad", ["", "Device", "status", "devicestatuses"])
def test_an_unknown_status_object_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match="status_object"):
        DeviceControllerSettings(status_object=bad)
    with pytest.raises(ValueError, match="device, devicestatus"):
        writer(Recorder(), bad)


def test_owned_by_keeps_name_and_namespace() -> None:
    assert owned_by(DEVICE)["metadata"]["name"] == "thermo-1"
    assert statusobject.DEFAULT == "device"
