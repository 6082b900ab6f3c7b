"""A Device's ``spec.methods``: checked against its properties, refused by field, passed to the mapper via DMI."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from edge.dmi.convert import Unconvertible, device_message
from schemas.devices import Device, DeviceMethod
from schemas.fields import BodyError
from schemas.resource import ResourceKey
from tests.support.dmi import dmi_device


def with_methods(methods: Any) -> dict[str, Any]:
    obj = copy.deepcopy(dmi_device())
    obj["spec"]["methods"] = methods
    return obj


def test_valid_methods_are_read_and_reach_the_mapper() -> None:
    obj = with_methods([{"name": "adjust", "description": "set and read back", "propertyNames": ["setpoint"]},
                        {"name": "all", "propertyNames": ["setpoint", "temperature"]}, {"name": "none"}])
    assert Device.parse(obj).methods == (DeviceMethod("adjust", "set and read back", ("setpoint",)),
                                         DeviceMethod("all", "", ("setpoint", "temperature")),
                                         DeviceMethod("none", "", ()))
    message = device_message(obj)
    assert [(m.name, m.description, list(m.propertyNames)) for m in message.spec.methods] == [
        ("adjust", "set and read back", ["setpoint"]), ("all", "", ["setpoint", "temperature"]), ("none", "", [])]


@pytest.mark.parametrize(("methods", "field", "reason"), [
    ([{"name": "adjust", "propertyNames": ["setpoint", "humidity"]}], "body.spec.methods[0].propertyNames[1]",
     "'humidity' is not one of the device's properties (setpoint, temperature)"),
    ([{"propertyNames": ["setpoint"]}], "body.spec.methods[0].name", "is missing"),
    ([{"name": "", "propertyNames": []}], "body.spec.methods[0].name", "is empty"),
    ([{"name": "a"}, {"name": "a"}], "body.spec.methods[1].name", "'a' names another method too"),
    ([{"name": "a", "propertyNames": "setpoint"}], "body.spec.methods[0].propertyNames",
     "must be a list of property names"),
    ("adjust", "body.spec.methods", "must be a list of maps"),
])
def test_a_bad_method_is_refused_naming_the_field(methods: Any, field: str, reason: str) -> None:
    obj = with_methods(methods)
    with pytest.raises(BodyError) as caught:
        Device.parse(obj)
    assert caught.value.field == field
    assert caught.value.reason.startswith(reason)
    with pytest.raises(Unconvertible, match=field.replace("body.", "").replace("[", r"\[").replace("]", r"\]")):
        device_message(obj)


def test_a_view_leaves_bad_methods_out_and_keeps_the_good_ones() -> None:
    obj = with_methods([{"name": "bad", "propertyNames": ["ghost"]}, {"name": "good", "propertyNames": ["setpoint"]}])
    assert [m.name for m in Device.view(obj).methods] == ["good"]


def test_devicetwin_refuses_a_device_whose_method_names_a_missing_property(tmp_path: Path) -> None:
    dt = DeviceTwin(TwinStore(tmp_path / "twin.db"), "edge-1")
    key = ResourceKey("default", "device", "thermo-1")
    assert dt.on_cloud(key, with_methods([{"name": "m", "propertyNames": ["ghost"]}])) == []
    assert dt.take_refused() == 1
    assert dt.store.device("default/thermo-1") is None
    assert dt.on_cloud(key, with_methods([{"name": "m", "propertyNames": ["setpoint"]}]))  # membership, delta
    assert dt.store.device("default/thermo-1") is not None
