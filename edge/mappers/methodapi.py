"""Device methods over HTTP, as KubeEdge's mapper framework serves them (its "device data writing" API).

A Device's ``spec.methods`` name groups of properties that may be written from outside; a mapper lists them
and writes a value through them on its HTTP port:

    GET /api/v1/ping
    GET /api/v1/devicemethod/{namespace}/{name}
        -> {"Data": {"Methods": [{"Name", "Path", "Parameters": [{"PropertyName", "ValueType"}]}]}}
    GET or PUT /api/v1/devicemethod/{namespace}/{name}/{method}/{property}/{data}
        -> {"statusCode": 200, "Message": "Write data ... successfully."}

The paths and body shapes are KubeEdge's, so clients written against its mappers call ours unchanged. An
error answers ``{"statusCode": N, "Message": why}`` with that status: 404 for a device, method or route this
mapper does not have, 400 for a property the method does not name or a value the device cannot take, 405 for
another HTTP method. This module is the routing and the checks, with no socket: methodserver.py serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

from edge.errors import EdgeError
from schemas.dmi.v1beta1 import api_pb2 as pb

PREFIX = "/api/v1/devicemethod"


class MethodError(EdgeError):
    """A call refused: its HTTP status and the reason given to the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MethodTarget(Protocol):
    """What the API needs of a mapper."""

    def method_device(self, namespace: str, name: str) -> tuple[pb.Device, pb.DeviceModel | None] | None:
        """The device as DMI gave it, and its model when known; None when this mapper does not serve it."""

    def write(self, namespace: str, name: str, prop: str, value: str) -> None:
        """Write ``value`` to the property; MethodError when the device cannot take it."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def _error(exc: MethodError) -> Answer:
    return Answer(exc.status, {"statusCode": exc.status, "Message": exc.message})


def answer(target: MethodTarget, verb: str, path: str, has_body: bool = False) -> Answer:
    """The answer to ``verb path`` (the path without its query). The API takes its value in the path, as
    KubeEdge's does: a request with a body is refused rather than have the body read by nobody."""
    try:
        if has_body:
            raise MethodError(400, f"a request body is not read here: the value goes in the path, "
                                   f"{PREFIX}/NAMESPACE/NAME/METHOD/PROPERTY/DATA")
        return _route(target, verb, path)
    except MethodError as exc:
        return _error(exc)


def _route(target: MethodTarget, verb: str, path: str) -> Answer:
    if path.rstrip("/") == "/api/v1/ping":
        _allow(verb, ("GET",))
        return Answer(200, {"statusCode": 200, "Message": "This is edgehive's Modbus mapper API; it works."})
    if not path.startswith(PREFIX + "/"):
        raise MethodError(404, f"no route {path!r}; this mapper serves /api/v1/ping and {PREFIX}/...")
    parts = [unquote(p) for p in path[len(PREFIX) + 1:].split("/")]
    if len(parts) == 2:
        _allow(verb, ("GET",))
        return _list(target, *parts)
    if len(parts) == 5:
        _allow(verb, ("GET", "PUT"))
        return _write(target, *parts)
    raise MethodError(404, f"no route {path!r}: {PREFIX}/NAMESPACE/NAME lists a device's methods, "
                           f"{PREFIX}/NAMESPACE/NAME/METHOD/PROPERTY/DATA calls one")


def _allow(verb: str, allowed: tuple[str, ...]) -> None:
    if verb not in allowed:
        raise MethodError(405, f"{verb} is not served here; use {' or '.join(allowed)}")


def _device(target: MethodTarget, namespace: str, name: str) -> tuple[pb.Device, pb.DeviceModel | None]:
    found = target.method_device(namespace, name)
    if found is None:
        raise MethodError(404, f"device {namespace}/{name} is not served by this mapper")
    return found


def _value_type(model: pb.DeviceModel | None, prop: str) -> str:
    for declared in model.spec.properties if model is not None else ():
        if declared.name == prop:
            return declared.type.lower()
    return "string"


def _list(target: MethodTarget, namespace: str, name: str) -> Answer:
    device, model = _device(target, namespace, name)
    methods = [{"Name": m.name,
                "Path": f"{PREFIX}/{namespace}/{name}/{m.name}/{{propertyName}}/{{data}}",
                "Parameters": [{"PropertyName": p, "ValueType": _value_type(model, p)} for p in m.propertyNames]}
               for m in device.spec.methods]
    return Answer(200, {"Data": {"Methods": methods}})


def _write(target: MethodTarget, namespace: str, name: str, method: str, prop: str, data: str) -> Answer:
    device, _model = _device(target, namespace, name)
    found = next((m for m in device.spec.methods if m.name == method), None)
    if found is None:
        known = ", ".join(m.name for m in device.spec.methods) or "none"
        raise MethodError(404, f"device {namespace}/{name} has no method {method!r} (its methods: {known})")
    if prop not in found.propertyNames:
        raise MethodError(400, f"method {method!r} of device {namespace}/{name} does not control property "
                               f"{prop!r} (it controls: {', '.join(found.propertyNames)})")
    target.write(namespace, name, prop, data)
    return Answer(200, {"statusCode": 200,
                        "Message": f"Write data {data} to device {namespace}/{name} property {prop} successfully."})
