"""The device-method API's routing and checks (edge/mappers/methodapi.py), against a target held in memory;
the real path (mapper process, Modbus server, register written) is tests/integration/test_modbus_mapper_e2e.py."""

from __future__ import annotations

import pytest

from edge.mappers.methodapi import MethodError, answer
from schemas.dmi.v1beta1 import api_pb2 as pb

BASE = "/api/v1/devicemethod/default/valve"


class Target:
    def __init__(self) -> None:
        self.device = pb.Device(name="valve", namespace="default", spec=pb.DeviceSpec(
            deviceModelReference="valve-model",
            methods=[pb.DeviceMethod(name="open", propertyNames=["position", "mode"])]))
        self.model = pb.DeviceModel(name="valve-model", namespace="default", spec=pb.DeviceModelSpec(
            properties=[pb.ModelProperty(name="position", type="INT")]))
        self.written: list[tuple[str, str, str, str]] = []
        self.refuse: MethodError | None = None

    def method_device(self, namespace: str, name: str) -> tuple[pb.Device, pb.DeviceModel | None] | None:
        return (self.device, self.model) if (namespace, name) == ("default", "valve") else None

    def write(self, namespace: str, name: str, prop: str, value: str) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.written.append((namespace, name, prop, value))


def test_the_methods_are_listed_with_their_calling_path_and_value_types() -> None:
    found = answer(Target(), "GET", BASE)
    assert found.status == 200
    assert found.body == {"Data": {"Methods": [{
        "Name": "open", "Path": f"{BASE}/open/{{propertyName}}/{{data}}",
        "Parameters": [{"PropertyName": "position", "ValueType": "int"},
                       {"PropertyName": "mode", "ValueType": "string"}]}]}}  # not in the model: a string


@pytest.mark.parametrize("verb", ["GET", "PUT"])
def test_a_call_writes_the_decoded_value(verb: str) -> None:
    target = Target()
    found = answer(target, verb, f"{BASE}/open/position/4%202")
    assert (found.status, found.body["statusCode"]) == (200, 200)
    assert target.written == [("default", "valve", "position", "4 2")]


@pytest.mark.parametrize(("verb", "path", "status", "why"), [
    ("GET", "/api/v1/devicemethod/default/pump", 404, "device default/pump is not served"),
    ("GET", f"{BASE}/close/position/1", 404, "no method 'close' (its methods: open)"),
    ("GET", f"{BASE}/open/speed/1", 400, "does not control property 'speed' (it controls: position, mode)"),
    ("DELETE", f"{BASE}/open/position/1", 405, "DELETE is not served here; use GET or PUT"),
    ("POST", BASE, 405, "use GET"),
    ("GET", f"{BASE}/open", 404, "METHOD/PROPERTY/DATA calls one"),
    ("GET", "/api/v1/device/default/valve", 404, "this mapper serves /api/v1/ping"),
])
def test_refusals_name_what_is_wrong_and_write_nothing(verb: str, path: str, status: int, why: str) -> None:
    target = Target()
    found = answer(target, verb, path)
    assert (found.status, found.body["statusCode"]) == (status, status)
    assert why in found.body["Message"]
    assert target.written == []


def test_the_targets_refusal_is_the_answer() -> None:
    target = Target()
    target.refuse = MethodError(400, "position: 70000 does not fit a 16-bit register")
    found = answer(target, "PUT", f"{BASE}/open/position/70000")
    assert found.status == 400
    assert found.body == {"statusCode": 400, "Message": "position: 70000 does not fit a 16-bit register"}


def test_a_body_is_refused_not_ignored() -> None:
    target = Target()
    found = answer(target, "PUT", f"{BASE}/open/position/4", has_body=True)
    assert found.status == 400
    assert "a request body is not read here: the value goes in the path" in found.body["Message"]
    assert target.written == []


def test_ping() -> None:
    assert answer(Target(), "GET", "/api/v1/ping").status == 200
