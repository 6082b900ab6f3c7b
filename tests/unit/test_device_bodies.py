"""Device and DeviceModel objects, the batches between EventBus and DeviceTwin, and a component's status."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.devicebus import (
    MEMBERSHIP_GET,
    DeviceRequest,
    EncodedPublication,
    Publication,
    parse_publications,
    parse_requests,
    publish_body,
    requests_body,
)
from schemas.devices import Device, DeviceModel, DeviceProperty, ModelProperty
from schemas.envelope import Envelope, Group, Op, decode
from schemas.fields import BodyError
from tests.support import devices as device_objects

DEVICE = {**device_objects.device("thermo-1", "edge-1", "25"),
          "metadata": {"name": "thermo-1", "namespace": "default", "labels": {"description": "hall"}}}
MODEL = device_objects.model("thermo")


def with_field(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    target = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def test_device_parses() -> None:
    device = Device.parse(DEVICE)
    assert (device.meta.name, device.node_name, device.model, device.description) == (
        "thermo-1", "edge-1", "thermo", "hall")
    assert device.properties == (DeviceProperty("setpoint", "25"), DeviceProperty("temperature", None))
    assert Device.parse({"metadata": {"name": "d"}}) == Device(Device.parse({"metadata": {"name": "d"}}).meta,
                                                                None, None, ())


@pytest.mark.parametrize(("path", "value", "field"), [
    (("metadata",), 5, "body.metadata"),
    (("metadata", "annotations"), ["x"], "body.metadata.annotations"),
    (("spec",), [1], "body.spec"),
    (("spec", "nodeName"), 5, "body.spec.nodeName"),
    (("spec", "deviceModelRef"), "thermo", "body.spec.deviceModelRef"),
    (("spec", "deviceModelRef", "name"), ["thermo"], "body.spec.deviceModelRef.name"),
    (("spec", "properties"), {"setpoint": {}}, "body.spec.properties"),
    (("spec", "properties", 1), "temperature", "body.spec.properties[1]"),
    (("spec", "properties", 0, "name"), None, "body.spec.properties[0].name"),
    (("spec", "properties", 0, "desired"), "25", "body.spec.properties[0].desired"),
    (("spec", "properties", 0, "desired", "value"), 25, "body.spec.properties[0].desired.value"),
])
def test_device_names_the_bad_field(path: tuple[Any, ...], value: Any, field: str) -> None:
    with pytest.raises(BodyError) as refused:
        Device.parse(with_field(DEVICE, path, value))
    assert refused.value.field == field
    assert Device.view(with_field(DEVICE, path, value)).meta.name in ("thermo-1", None)  # the view never raises


def test_device_must_be_a_map() -> None:
    with pytest.raises(BodyError) as refused:
        Device.parse([DEVICE])
    assert refused.value.field == "body"
    assert Device.view([DEVICE]).properties == ()


def test_model_parses() -> None:
    model = DeviceModel.parse(MODEL)
    assert model.properties == {"temperature": ModelProperty("temperature", "FLOAT", "-40", "125"),
                                "setpoint": ModelProperty("setpoint", "INT", None, None)}
    assert DeviceModel.parse({"spec": {"properties": [{"name": "x", "type": "float"}, {"name": "y"}]}}).properties == {
        "x": ModelProperty("x", "FLOAT", None, None), "y": ModelProperty("y", "STRING", None, None)}


@pytest.mark.parametrize(("path", "value", "field"), [
    (("spec",), "x", "body.spec"),
    (("spec", "properties"), "temperature", "body.spec.properties"),
    (("spec", "properties", 0), 5, "body.spec.properties[0]"),
    (("spec", "properties", 0, "name"), 5, "body.spec.properties[0].name"),
    (("spec", "properties", 1, "type"), ["INT"], "body.spec.properties[1].type"),
    (("spec", "properties", 0, "minimum"), -40, "body.spec.properties[0].minimum"),
    (("spec", "properties", 0, "maximum"), 125.0, "body.spec.properties[0].maximum"),
])
def test_model_names_the_bad_field(path: tuple[Any, ...], value: Any, field: str) -> None:
    with pytest.raises(BodyError) as refused:
        DeviceModel.parse(with_field(MODEL, path, value))
    assert refused.value.field == field
    DeviceModel.view(with_field(MODEL, path, value))  # never raises


# -- EventBus <-> DeviceTwin -------------------------------------------------------------------------------

def test_requests_round_trip() -> None:
    sent = [DeviceRequest("default", "thermo-1", "twin/update", b"{}"), DeviceRequest("", "", MEMBERSHIP_GET, b"{}")]
    body = requests_body(sent)
    assert body == {"requests": [["default", "thermo-1", "twin/update", b"{}"], ["", "", MEMBERSHIP_GET, b"{}"]]}
    assert parse_requests(body) == sent


@pytest.mark.parametrize(("item", "field"), [
    ("twin/update", "body.requests[0]"),
    (["default", "thermo-1", "twin/update"], "body.requests[0]"),
    (["default", "thermo-1", 5, b"{}"], "body.requests[0].request"),
    (["default", "thermo-1", "twin/update", "{}"], "body.requests[0].payload"),
    ([None, "thermo-1", "twin/update", b"{}"], "body.requests[0]"),
    (["default", "thermo-1", "twin/delete", b"{}"], "body.requests[0].request"),
    (["Default", "thermo-1", "twin/get", b"{}"], "body.requests[0]"),
    (["default", "a/b", "state/update", b"{}"], "body.requests[0]"),
])
def test_a_bad_request_is_refused_alone(item: Any, field: str) -> None:
    good = DeviceRequest("default", "thermo-1", "twin/get", b"{}")
    bad, parsed = parse_requests({"requests": [item, good.to_wire()]})
    assert isinstance(bad, BodyError)
    assert bad.field == field
    assert parsed == good


@pytest.mark.parametrize("body", [None, 5, [], {"requests": {"a": 1}}, {"requests": None}, {}])
def test_a_request_batch_must_be_one(body: Any) -> None:
    with pytest.raises(BodyError):
        parse_requests(body)


ANSWER = topics.device("default", "thermo-1", "twin/get/result")


def test_publications_go_written_as_json_and_round_trip() -> None:
    sent = [Publication(ANSWER, {"a": 1, "b": "<&>"}, 0, False).encoded(), Publication(ANSWER, None, 1, True).encoded()]
    body = publish_body(sent)
    assert body == {"publish": [[ANSWER, b'{"a":1,"b":"\\u003c\\u0026\\u003e"}', 0, False], [ANSWER, b"", 1, True]]}
    assert parse_publications(decode(Envelope(node="n", src="devicetwin", group=Group.BUS, op=Op.UPDATE,
                                              body=body).encode()).body) == sent


def test_a_long_answer_topic_within_mqtts_65535_bytes_is_taken() -> None:
    topic = "$hw/events/" + "\u00e9" * 20000  # past the characters that always fit, within the bytes
    assert parse_publications({"publish": [[topic, b"{}", 1, False]]}) == [EncodedPublication(topic, b"{}", 1, False)]


def test_an_answer_that_cannot_be_json_raises_when_written() -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(100_000):
        inner["x"] = inner = {}
    for payload in ({"a": {1, 2}}, {"a": object()}, deep):
        with pytest.raises((TypeError, ValueError, RecursionError)):
            Publication(ANSWER, payload).encoded()


@pytest.mark.parametrize(("item", "field"), [
    ({"topic": ANSWER}, "body.publish[0]"),
    ([ANSWER, {}, 0], "body.publish[0]"),
    (["edgehive/edge/to-cloud", b"{}", 0, False], "body.publish[0].topic"),
    (["$hw/events/device/+/x", b"{}", 0, False], "body.publish[0].topic"),
    ([b"$hw/events/x", b"{}", 0, False], "body.publish[0].topic"),
    (["$hw/events/" + "x" * 70000, b"{}", 0, False], "body.publish[0].topic"),
    (["$hw/events/" + "\u00e9" * 33000, b"{}", 0, False], "body.publish[0].topic"),  # 33,011 characters, 66,011 bytes
    (["$hw/events/device/#", b"{}", 0, False], "body.publish[0].topic"),
    (["$hw/events/device/a\0b", b"{}", 0, False], "body.publish[0].topic"),
    ([ANSWER, [1], 0, False], "body.publish[0].payload"),
    ([ANSWER, {"a": 1}, 0, False], "body.publish[0].payload"),
    ([ANSWER, None, 0, False], "body.publish[0].payload"),
    ([ANSWER, "{}", 0, False], "body.publish[0].payload"),
    ([ANSWER, b"{}", 3, False], "body.publish[0].qos"),
    ([ANSWER, b"{}", True, False], "body.publish[0].qos"),
    ([ANSWER, b"{}", 1, 1], "body.publish[0].retain"),
])
def test_a_bad_publication_is_refused_alone(item: Any, field: str) -> None:
    bad, good = parse_publications({"publish": [item, [ANSWER, b"", 1, True]]})
    assert isinstance(bad, BodyError)
    assert bad.field == field
    assert good == EncodedPublication(ANSWER, b"", 1, True)


@pytest.mark.parametrize("body", [None, "x", {"publish": 5}, {}])
def test_a_publish_batch_must_be_one(body: Any) -> None:
    with pytest.raises(BodyError):
        parse_publications(body)


# -- a component's status ----------------------------------------------------------------------------------

def test_component_status() -> None:
    status = ComponentStatus.parse({"state": "up", "pid": 42, "started": 1})
    assert (status.up, status.pid) == (True, 42)
    assert not ComponentStatus.parse({"state": "down", "reason": "connection lost"}).up
    for body, field in ((None, "body"), ({"pid": 1}, "body.state"), ({"state": 1}, "body.state"),
                        ({"state": "up", "pid": "42"}, "body.pid"), ({"state": "up", "pid": True}, "body.pid")):
        with pytest.raises(BodyError) as refused:
            ComponentStatus.parse(body)
        assert refused.value.field == field
