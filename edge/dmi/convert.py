"""Device and DeviceModel objects from the node's store, as DMI messages for mappers.

KubeEdge makes its DMI messages by writing the v1beta1 object as JSON and reading that JSON into the
protobuf type, so the two agree field by field wherever the names match; the same is done here with
protobuf's own JSON reader (unknown fields ignored, as Go's reader ignores them). What does not map by
name is done by hand, as KubeEdge does it:

- keys match DMI's field names case-insensitively, as Go's JSON reader matches them (``hostName`` fills
  ``hostname``; _go_keys);
- ``spec.deviceModelRef.name`` becomes ``spec.deviceModelReference``;
- ``configData`` (a free map in the CRD) becomes ``CustomizedValue.data``, each value packed in an Any
  holding a protobuf wrapper: a string as StringValue, a boolean as BoolValue and every number as
  FloatValue (Go reads every JSON number as float64 and KubeEdge packs float64 as FloatValue, so mappers
  built with KubeEdge's framework expect that); a value of any other shape cannot be packed, and the
  device is refused, as KubeEdge refuses it;
- ``spec.methods`` go as they are, once each names only properties the device has (read_methods);
- ``spec.stateReport`` fills ``status.reportCycle`` and ``status.reportToCloud``;
- visitors and protocol settings a DeviceModel gives its properties are the defaults that the device's own
  settings override key by key (KubeEdge's ``GetOverriddenDevice``).
"""

from __future__ import annotations

import copy
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from edge.errors import EdgeError
from schemas.devices import read_methods
from schemas.dmi.v1beta1 import api_pb2 as pb
from schemas.dmi.values import NotAWrapper, pack
from schemas.fields import STRICT, BodyError


class Unconvertible(EdgeError, ValueError):
    """An object that cannot be made into its DMI message; the message says why."""


def _customized(data: Any, where: str) -> pb.CustomizedValue | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise Unconvertible(f"{where} must be a map, not {type(data).__name__}")
    out = pb.CustomizedValue()
    for key, value in data.items():
        try:
            out.data[str(key)].CopyFrom(pack(value))
        except NotAWrapper as exc:
            raise Unconvertible(f"{where}.{key}: {exc}") from None
    return out


def _go_keys(obj: Any, descriptor: Descriptor) -> Any:
    """``obj`` with each key spelled as the protobuf field it matches case-insensitively, as Go's encoding/json
    matches them when edgecore reads the object into the DMI message: the CRD's ``pushMethod.http.hostName``
    and ``requestPath`` fill DMI's ``hostname`` and ``requestpath``, ``dbMethod.TDEngine`` its ``tdengine``.
    protobuf's JSON reader matches exactly, and would drop them without a word."""
    if not isinstance(obj, dict):
        return obj
    by_lower = {f.name.lower(): f for f in descriptor.fields}
    by_lower.update({f.json_name.lower(): f for f in descriptor.fields})
    out: dict[str, Any] = {}
    for key, value in obj.items():
        found = by_lower.get(str(key).lower())
        if found is None:
            out[key] = value
            continue
        name = key if key in (found.name, found.json_name) else found.json_name
        out[name] = _go_value(value, found)
    return out


def _go_value(value: Any, found: FieldDescriptor) -> Any:
    inner = found.message_type
    if inner is None or inner.full_name == "google.protobuf.Any":
        return value
    if inner.GetOptions().map_entry:  # keys are the user's; only message values are spelled
        values = inner.fields_by_name["value"].message_type
        if values is None or not isinstance(value, dict):
            return value
        return {k: _go_keys(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_keys(v, inner) for v in value]
    return _go_keys(value, inner)


def _read(obj: dict[str, Any], message: Message, what: str) -> None:
    try:
        json_format.ParseDict(_go_keys(obj, cast(Descriptor, message.DESCRIPTOR)), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise Unconvertible(f"{what}: {exc}") from None


def _name(obj: dict[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise Unconvertible("the object has no metadata.name")
    return str(metadata.get("namespace") or "default"), str(metadata["name"])


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def protocol_of(device: dict[str, Any]) -> str:
    """The protocol a device's mapper speaks (``spec.protocol.protocolName``), "" when it names none."""
    name = _dict(_dict(device.get("spec")).get("protocol")).get("protocolName")
    return name if isinstance(name, str) else ""


def node_of(device: dict[str, Any]) -> str:
    """The node that serves the device (``spec.nodeName``), "" when it names none."""
    name = _dict(device.get("spec")).get("nodeName")
    return name if isinstance(name, str) else ""


def model_name_of(device: dict[str, Any]) -> str:
    name = _dict(_dict(device.get("spec")).get("deviceModelRef")).get("name")
    return name if isinstance(name, str) else ""


def overridden(device: dict[str, Any], model: dict[str, Any] | None) -> dict[str, Any]:
    """The device with its model's visitors and protocol settings under its own (the device's win, key by key)."""
    if model is None:
        return device
    out = copy.deepcopy(device)
    spec = out.setdefault("spec", {})
    model_spec = _dict(model.get("spec"))
    model_props = {p.get("name"): p for p in model_spec.get("properties") or [] if isinstance(p, dict)}
    for prop in spec.get("properties") or []:
        if not isinstance(prop, dict):
            continue
        defaults = _dict(model_props.get(prop.get("name"))).get("visitors")
        if not isinstance(defaults, dict):
            continue
        own = _dict(prop.get("visitors"))
        merged = {**copy.deepcopy(defaults), **{k: v for k, v in own.items() if k != "configData"}}
        config = {**_dict(defaults.get("configData")), **_dict(own.get("configData"))}
        if config:
            merged["configData"] = config
        prop["visitors"] = merged
    model_config = model_spec.get("protocolConfigData")
    if isinstance(model_config, dict):
        protocol = spec.setdefault("protocol", {})
        protocol["configData"] = {**model_config, **_dict(protocol.get("configData"))}
    return out


def device_message(device: dict[str, Any], model: dict[str, Any] | None = None) -> pb.Device:
    """A stored Device (with its model's defaults, when the model is known) as DMI's Device."""
    namespace, name = _name(device)
    obj = overridden(device, model)
    spec = copy.deepcopy(_dict(obj.get("spec")))
    protocol = _dict(spec.pop("protocol", None))
    properties = [p for p in spec.pop("properties", None) or [] if isinstance(p, dict)]
    message = pb.Device(name=name, namespace=namespace)
    try:
        read_methods({"properties": properties, "methods": spec.get("methods")}, STRICT, "spec")
    except BodyError as exc:
        raise Unconvertible(f"device {namespace}/{name}: {exc}") from None
    _read({"methods": spec.get("methods") or []}, message.spec, f"device {namespace}/{name}: spec.methods")
    message.spec.deviceModelReference = model_name_of(obj)
    message.spec.protocol.protocolName = str(protocol.get("protocolName") or "")
    config = _customized(protocol.get("configData"), "spec.protocol.configData")
    if config is not None:
        message.spec.protocol.configData.CopyFrom(config)
    for index, prop in enumerate(properties):
        message.spec.properties.append(_property(prop, f"device {namespace}/{name}: spec.properties[{index}]"))
    status = _dict(obj.get("status"))
    if status.get("twins"):
        _read({"twins": status["twins"]}, message.status, f"device {namespace}/{name}: status.twins")
    state_report = _dict(spec.get("stateReport"))
    if state_report:
        message.status.reportCycle = int(state_report.get("reportCycle") or 0)
        message.status.reportToCloud = bool(state_report.get("reportToCloud"))
    return message


def _property(prop: dict[str, Any], where: str) -> pb.DeviceProperty:
    plain = copy.deepcopy(prop)
    visitors = _dict(plain.pop("visitors", None))
    push = _dict(plain.get("pushMethod"))
    anomaly = push.pop("anomalyDetection", None)
    out = pb.DeviceProperty()
    _read(plain, out, where)
    out.visitors.protocolName = str(visitors.get("protocolName") or "")
    config = _customized(visitors.get("configData"), f"{where}.visitors.configData")
    if config is not None:
        out.visitors.configData.CopyFrom(config)
    if isinstance(anomaly, dict):
        detection = _customized(anomaly.get("data", anomaly), f"{where}.pushMethod.anomalyDetection")
        if detection is not None:
            out.pushMethod.anomalyDetection.data.MergeFrom(detection.data)
    return out


def model_message(model: dict[str, Any]) -> pb.DeviceModel:
    namespace, name = _name(model)
    message = pb.DeviceModel(name=name, namespace=namespace)
    spec = _dict(model.get("spec"))
    _read({"properties": spec.get("properties") or [], "commands": spec.get("commands") or []}, message.spec,
          f"device model {namespace}/{name}: spec")
    return message
