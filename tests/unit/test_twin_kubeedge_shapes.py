"""Twin types and the exact JSON shapes of DeviceTwin's answers, against KubeEdge's edge (edge/pkg/devicetwin).

The golden messages below are what KubeEdge's Go structs marshal to (dttype: MsgTwin, TwinValue,
MembershipUpdate, MembershipGetResult, DeviceMsg, Result; ``omitempty`` fields left out when empty,
nil slices as ``null``), with the values that change per run (timestamps, generated event ids, times)
replaced by placeholders.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from cloud.devicecontroller.controller import check_reported
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from schemas import twin
from schemas.devicebus import Publication
from schemas.devices import Device, ModelProperty
from schemas.fields import BodyError
from schemas.resource import ResourceKey

NS, NODE = "default", "edge-1"
LAMP = f"$hw/events/device/{NS}/lamp"
MEMBERSHIP = f"$hw/events/node/{NODE}/membership"


def lamp(props: list[dict[str, Any]], rv: str = "5", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The issue's device: a v1beta1 Device whose properties the test gives."""
    meta: dict[str, Any] = {"name": "lamp", "namespace": NS, "resourceVersion": rv}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "metadata": meta,
            "spec": {"deviceModelRef": {"name": "lamp-model"}, "nodeName": NODE, "properties": props}}


POWER = {"name": "power", "desired": {"value": "true", "metadata": {"type": "boolean"}}}


def model(**types: str) -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel",
            "metadata": {"name": "lamp-model", "namespace": NS},
            "spec": {"properties": [{"name": k, "type": v} for k, v in types.items()]}}


@pytest.fixture
def dt(tmp_path: Path) -> DeviceTwin:
    return DeviceTwin(TwinStore(tmp_path / "twin.db"), NODE)


def put(dt: DeviceTwin, kind: str, obj: dict[str, Any] | None, name: str = "lamp") -> list[Publication]:
    return dt.on_cloud(ResourceKey(NS, kind, name), obj)


def ask(dt: DeviceTwin, request: str, body: dict[str, Any] | bytes, device: str = "lamp") -> dict[str, Any]:
    """The answer on ``request``/result (the one publication on that topic)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    out = {p.topic: p.payload for p in dt.on_device(NS, device, request, payload)}
    answer = out[f"$hw/events/device/{NS}/{device}/{request}/result"]
    assert answer is not None
    return answer


def normal(obj: Any) -> Any:
    """``obj`` with run-dependent values replaced: timestamps by "T", generated event ids by "UUID",
    RFC 3339 times by "TIME"."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "timestamp" and type(value) is int and value > 0:
                out[key] = "T"
            elif key in ("lastOnlineTime", "last_online") and isinstance(value, str) and value.endswith("Z"):
                out[key] = "TIME"
            elif key == "event_id" and isinstance(value, str) and _is_uuid(value):
                out[key] = "UUID"
            else:
                out[key] = normal(value)
        return out
    if isinstance(obj, list):
        return [normal(v) for v in obj]
    return obj


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def golden(text: str) -> Any:
    return json.loads(text)


# -- the type of a twin -------------------------------------------------------------------------------------


def test_model_types_map_as_kubeedge_names_them() -> None:
    # KubeEdge's mapper framework lower-cases the DeviceModel type (INT -> int, DOUBLE -> double, ...).
    assert twin.MODEL_TYPES == {"INT": "int", "FLOAT": "float", "DOUBLE": "double", "BOOLEAN": "boolean",
                                "STRING": "string", "BYTES": "bytes", "STREAM": "stream", "TIMESTAMP": "int"}
    assert set(twin.MODEL_TYPES.values()) <= twin.TYPES


@pytest.mark.parametrize("model_first", [True, False])
def test_issue_example_twin_type_is_boolean_whatever_arrives_first(dt: DeviceTwin, model_first: bool) -> None:
    steps = [("devicemodel", model(power="BOOLEAN"), "lamp-model"), ("device", lamp([POWER]), "lamp")]
    for kind, obj, name in steps if model_first else steps[::-1]:
        put(dt, kind, obj, name)
    got = ask(dt, "twin/get", {"event_id": "q"})
    assert normal(got) == golden("""{"event_id": "q", "timestamp": "T", "twin": {"power": {
        "expected": {"value": "true", "metadata": {"timestamp": "T"}},
        "optional": false, "metadata": {"type": "boolean"}}}}""")


def test_a_model_arriving_after_the_device_republishes_the_retained_delta_with_the_type(dt: DeviceTwin) -> None:
    first = {p.topic: p for p in put(dt, "device", lamp([{"name": "power", "desired": {"value": "true"}}]))}
    assert (first[f"{LAMP}/twin/update/delta"].payload or {})["twin"]["power"]["metadata"] == {"type": "string"}
    (again,) = put(dt, "devicemodel", model(power="BOOLEAN"), "lamp-model")
    assert (again.topic, again.retain) == (f"{LAMP}/twin/update/delta", True)
    assert (again.payload or {})["twin"]["power"]["metadata"] == {"type": "boolean"}
    assert put(dt, "devicemodel", model(power="BOOLEAN"), "lamp-model") == []  # nothing changed: nothing sent


def test_desired_type_outranks_the_model_and_a_later_model_retypes_the_rest(dt: DeviceTwin) -> None:
    put(dt, "device", lamp([{"name": "level", "desired": {"value": "3", "metadata": {"type": "int"}}},
                            {"name": "ratio", "desired": {"value": "0.5"}},
                            {"name": "mode", "desired": {"metadata": {"type": "boolean"}}}]))
    types = {k: v["metadata"] for k, v in ask(dt, "twin/get", {"event_id": "1"})["twin"].items()}
    assert types == {"level": {"type": "int"}, "ratio": {"type": "string"}, "mode": {"type": "boolean"}}
    put(dt, "devicemodel", model(level="STRING", ratio="DOUBLE", mode="STRING"), "lamp-model")
    types = {k: v["metadata"] for k, v in ask(dt, "twin/get", {"event_id": "2"})["twin"].items()}
    assert types == {"level": {"type": "int"}, "ratio": {"type": "double"}, "mode": {"type": "boolean"}}
    # A type-only property has a twin with no value: KubeEdge leaves the value out, not "".
    assert ask(dt, "twin/get", {"event_id": "3"})["twin"]["mode"] == {"optional": False,
                                                                     "metadata": {"type": "boolean"}}
    # The type travels up with the reported value.
    ask(dt, "twin/update", {"event_id": "r", "twin": {"ratio": {"actual": {"value": "0.25"}}}})
    (report,) = dt.take_reports()
    ratio = next(t for t in report[1]["twins"] if t["propertyName"] == "ratio")
    assert ratio["reported"]["metadata"]["type"] == "double"


def test_a_device_whose_desired_value_does_not_fit_its_type_is_refused(dt: DeviceTwin) -> None:
    put(dt, "devicemodel", model(level="INT"), "lamp-model")
    assert put(dt, "device", lamp([{"name": "level", "desired": {"value": "high"}}])) == []
    assert put(dt, "device", lamp([{"name": "on", "desired": {"value": "yes", "metadata": {"type": "boolean"}}}])) \
        == []
    assert dt.take_refused() == 2
    assert dt.store.device(f"{NS}/lamp") is None
    with pytest.raises(BodyError, match=r"properties\[0\]\.desired\.metadata\.type"):
        Device.parse(lamp([{"name": "x", "desired": {"value": "1", "metadata": {"type": "decimal"}}}]))


@pytest.mark.parametrize(("kind", "value", "reason"), [
    ("boolean", "yes", twin.REASON_NOT_BOOL), ("boolean", "True", twin.REASON_NOT_BOOL),
    ("int", "1.5", twin.REASON_NOT_INT), ("int", "1_000", twin.REASON_NOT_INT),
    ("int", str(2**63), twin.REASON_NOT_INT), ("integer", "", twin.REASON_NOT_INT),
    ("float", "abc", twin.REASON_NOT_FLOAT), ("float", "1e400", twin.REASON_NOT_FLOAT),
    ("double", "1_0.5", twin.REASON_NOT_FLOAT), ("date", "1", twin.REASON_TYPE),
    ("boolean", "false", None), ("int", "-9223372036854775808", None), ("float", "1e-3", None),
    ("double", "-Inf", None), ("float", ".5", None), ("string", "anything", None), ("bytes", "aGk", None),
    # Decimals without an exponent: past a float64's range only with 309 digits or more.
    ("float", "9" * 299 + ".5", None), ("double", "-" + "9" * 308, None),
    ("float", "1" + "0" * 309, twin.REASON_NOT_FLOAT),
])
def test_values_are_checked_as_kubeedges_validate_value_does(kind: str, value: str, reason: str | None) -> None:
    assert twin.type_error(value, kind) == reason


def test_reported_values_follow_the_twin_type_with_kubeedges_reasons(dt: DeviceTwin) -> None:
    put(dt, "devicemodel", model(power="BOOLEAN", level="INT", ratio="DOUBLE"), "lamp-model")
    put(dt, "device", lamp([POWER]))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"event_id": "a", "twin": {"power": {"actual": {"value": "on"}}}}, twin.REASON_NOT_BOOL),
        # The type a device sends for a property is not the one checked: the twin's is.
        ({"event_id": "b", "twin": {"power": {"actual": {"value": "1"}, "metadata": {"type": "int"}}}},
         twin.REASON_NOT_BOOL),
        ({"event_id": "c", "twin": {"level": {"actual": {"value": "2.5"}, "metadata": {"type": "float"}}}},
         twin.REASON_NOT_INT),
        ({"event_id": "d", "twin": {"fresh": {"actual": {"value": "1"}, "metadata": {"type": "decimal"}}}},
         twin.REASON_TYPE),
        ({"event_id": "e", "twin": {"bad name": {"actual": {"value": "1"}}}}, twin.REASON_KEY),
        ({"event_id": "f", "twin": {"power": {"actual": {"value": "a b"}}}}, twin.REASON_VALUE),
        ({"event_id": "g", "twin": {"power": {"actual": {"value": True}}}}, twin.REASON_UNMARSHAL),
        ({"event_id": "h"}, twin.REASON_NO_TWIN),
        ({"event_id": "i", "twin": {"ghost": None}}, "the request body is wrong"),
    ]
    for body, reason in cases:
        answer = ask(dt, "twin/update", body)
        # What KubeEdge's UnmarshalDeviceTwinUpdate refuses is answered with an empty event_id, as there.
        unread = reason in (twin.REASON_KEY, twin.REASON_VALUE, twin.REASON_UNMARSHAL, twin.REASON_NO_TWIN)
        event_id = "" if unread else body["event_id"]
        assert normal(answer) == {"event_id": event_id, "timestamp": "T", "code": 400, "reason": reason}
    assert normal(ask(dt, "twin/update", b"{oops")) == {"event_id": "", "timestamp": "T", "code": 400,
                                                         "reason": twin.REASON_UNMARSHAL}
    assert ask(dt, "twin/update", {"event_id": "j", "twin": {"ratio": {"actual": {"value": "0.125"}}}})["twin"]
    assert "actual" not in ask(dt, "twin/get", {"event_id": "k"})["twin"]["power"]  # nothing refused was stored


# -- the shapes of the answers -------------------------------------------------------------------------------


def test_membership_updates_have_null_for_the_empty_side(dt: DeviceTwin) -> None:
    added = {p.topic: p.payload for p in put(dt, "device", lamp([POWER]))}[f"{MEMBERSHIP}/updated"]
    assert normal(added) == golden("""{"event_id": "UUID", "timestamp": "T",
        "added_devices": [{"id": "default/lamp", "name": "lamp"}], "removed_devices": null}""")
    removed = {p.topic: p.payload for p in put(dt, "device", None)}[f"{MEMBERSHIP}/updated"]
    assert normal(removed) == golden("""{"event_id": "UUID", "timestamp": "T",
        "added_devices": null, "removed_devices": [{"id": "default/lamp", "name": "lamp"}]}""")
    labelled = {p.topic: p.payload for p in put(dt, "device", lamp([], labels={"description": "hall"}))}
    assert (labelled[f"{MEMBERSHIP}/updated"] or {})["added_devices"] == [
        {"id": "default/lamp", "name": "lamp", "description": "hall"}]


def test_membership_get_lists_devices_without_empty_fields(dt: DeviceTwin) -> None:
    (empty,) = dt.membership_get(b'{"event_id":"m0"}')
    assert normal(empty.payload) == golden("""{"event_id": "m0", "timestamp": "T", "devices": []}""")
    put(dt, "device", lamp([POWER]))
    (one,) = dt.membership_get(b'{"event_id":"m1"}')
    assert normal(one.payload) == golden("""{"event_id": "m1", "timestamp": "T",
        "devices": [{"id": "default/lamp", "name": "lamp"}]}""")
    ask(dt, "state/update", {"event_id": "s", "state": "online"})
    (online,) = dt.membership_get(b'{"event_id":"m2"}')
    assert normal(online.payload)["devices"] == [{"id": "default/lamp", "name": "lamp", "state": "online",
                                                  "last_online": "TIME"}]
    (bad,) = dt.membership_get(b'{"event_id": 7}')
    assert bad.payload is not None
    assert bad.payload["code"] == 400
    assert bad.payload["reason"].startswith('Unmarshal get membership info {"event_id": 7} failed , err: ')


def test_state_result_is_kubeedges_device_msg(dt: DeviceTwin) -> None:
    put(dt, "device", lamp([POWER]))
    assert normal(ask(dt, "state/update", {"event_id": "s", "state": "Online"})) == golden("""{
        "event_id": "UUID", "timestamp": "T", "device": {"name": "lamp", "state": "Online",
        "lastOnlineTime": "TIME"}}""")
    # Offline: KubeEdge clears the last online time in its answer.
    assert normal(ask(dt, "state/update", {"event_id": "s", "state": "offline"})) == golden("""{
        "event_id": "UUID", "timestamp": "T", "device": {"name": "lamp", "state": "offline"}}""")
    (report,) = dt.take_reports()
    assert report[1]["state"] == "offline"
    assert report[1]["lastOnlineTime"]


def test_update_result_holds_what_the_request_set_and_a_document_only_on_change(dt: DeviceTwin) -> None:
    put(dt, "devicemodel", model(power="BOOLEAN"), "lamp-model")
    put(dt, "device", lamp([POWER]))
    out = {p.topic: p.payload for p in dt.on_device(NS, "lamp", "twin/update", json.dumps(
        {"event_id": "u", "twin": {"power": {"actual": {"value": "true"}},
                                   "watts": {"actual": {"value": "7"}, "metadata": {"type": "int"}}}}).encode())}
    assert normal(out[f"{LAMP}/twin/update/result"]) == golden("""{"event_id": "u", "timestamp": "T", "twin": {
        "power": {"actual": {"value": "true", "metadata": {"timestamp": "T"}},
                  "optional": false, "metadata": {"type": "boolean"}},
        "watts": {"actual": {"value": "7", "metadata": {"timestamp": "T"}},
                  "optional": true, "metadata": {"type": "int"}}}}""")
    assert normal(out[f"{LAMP}/twin/update/document"]) == golden("""{"event_id": "u", "timestamp": "T", "twin": {
        "power": {"last": {"expected": {"value": "true", "metadata": {"timestamp": "T"}},
                           "optional": false, "metadata": {"type": "boolean"}},
                  "current": {"expected": {"value": "true", "metadata": {"timestamp": "T"}},
                              "actual": {"value": "true", "metadata": {"timestamp": "T"}},
                              "optional": false, "metadata": {"type": "boolean"}}},
        "watts": {"last": null, "current": {"actual": {"value": "7", "metadata": {"timestamp": "T"}},
                                            "optional": true, "metadata": {"type": "int"}}}}}""")
    nothing = {p.topic: p.payload for p in dt.on_device(NS, "lamp", "twin/update", b'{"event_id":"n","twin":{}}')}
    assert normal(nothing) == {f"{LAMP}/twin/update/result": {"event_id": "n", "timestamp": "T", "twin": {}}}
    deleted = ask(dt, "twin/update", {"event_id": "d", "twin": {"watts": None}})
    assert deleted["twin"] == {"watts": None}


def test_delta_and_get_errors(dt: DeviceTwin) -> None:
    pubs = {p.topic: p.payload for p in put(dt, "device", lamp([POWER]))}
    assert normal(pubs[f"{LAMP}/twin/update/delta"]) == golden("""{"event_id": "UUID", "timestamp": "T",
        "twin": {"power": {"expected": {"value": "true", "metadata": {"timestamp": "T"}},
                           "optional": false, "metadata": {"type": "boolean"}}},
        "delta": {"power": "true"}}""")
    missing = ask(dt, "twin/get", {"event_id": "g"}, device="ghost")
    assert normal(missing) == {"event_id": "g", "timestamp": "T", "code": 404,
                               "reason": "Device default/ghost not found while getting twin"}
    unreadable = ask(dt, "twin/get", b"[1]")
    assert unreadable["code"] == 400
    assert unreadable["reason"].startswith("Unmarshal twin info [1] failed , err: ")
    unknown = ask(dt, "twin/update", {"event_id": "x", "twin": {"a": {"actual": {"value": "1"}}}}, device="ghost")
    assert normal(unknown) == {"event_id": "x", "timestamp": "T", "code": 404, "reason": twin.REASON_NO_DEVICE}


def test_the_cloud_checks_a_reported_value_against_the_same_type() -> None:
    float_prop = ModelProperty("t", "FLOAT", "-40", "125")
    assert check_reported(float_prop, "23.5") is None
    assert check_reported(float_prop, "200") == "200 is outside the model's maximum 125"
    assert check_reported(float_prop, "warm") == f"'warm': {twin.REASON_NOT_FLOAT}"
    # The Device's desired.metadata.type outranks the model's, at the edge and in the cloud alike.
    assert check_reported(ModelProperty("p", "INT", None, None), "abc", "string") is None
    assert check_reported(ModelProperty("p", "STRING", None, None), "abc", "int") == f"'abc': {twin.REASON_NOT_INT}"
    assert check_reported(ModelProperty("d", "DOUBLE", None, None), "0.1") is None
    assert check_reported(None, "anything") is None


# -- requests read as KubeEdge's Go structs read them ----------------------------------------------------------


def test_a_json_null_request_is_read_as_an_empty_one_as_go_unmarshals_it(dt: DeviceTwin) -> None:
    # json.Unmarshal of null into KubeEdge's DeviceTwinUpdate or BaseMessage is no error and sets nothing: an
    # update then has no twin, a get is a get with no event_id.
    put(dt, "device", lamp([POWER]))
    assert normal(ask(dt, "twin/update", b"null")) == {"event_id": "", "timestamp": "T", "code": 400,
                                                       "reason": twin.REASON_NO_TWIN}
    got = ask(dt, "twin/get", b"null")
    assert (got["event_id"], list(got["twin"])) == ("", ["power"])
    (members,) = dt.membership_get(b"null")
    assert normal(members.payload) == {"event_id": "", "timestamp": "T",
                                       "devices": [{"id": "default/lamp", "name": "lamp"}]}


def test_a_new_twin_whose_metadata_has_no_type_has_the_empty_type_as_in_go(dt: DeviceTwin) -> None:
    # KubeEdge's dealTwinAdd takes msgTwin.Metadata.Type whenever metadata is there: Go leaves Type "" for {} or
    # a null type, so the twin's type is "" (any value; "metadata":{} in answers). Without metadata: string.
    put(dt, "device", lamp([POWER]))
    answer = ask(dt, "twin/update", {"event_id": "u", "twin": {"a": {"actual": {"value": "x"}, "metadata": {}},
                                                               "b": {"actual": {"value": "y"},
                                                                     "metadata": {"type": None}},
                                                               "c": {"actual": {"value": "z"}}}})
    assert {k: v["metadata"] for k, v in answer["twin"].items()} == {"a": {}, "b": {}, "c": {"type": "string"}}
    got = ask(dt, "twin/get", {"event_id": "g"})["twin"]
    assert (got["a"]["metadata"], got["b"]["metadata"], got["c"]["metadata"]) == ({}, {}, {"type": "string"})


def test_making_a_twin_required_is_answered_with_optional_alone(dt: DeviceTwin) -> None:
    # KubeEdge's dealTwinCompare fills the result's metadata only where it sets a value: a request that only
    # makes an optional twin required gets {"optional": false}, while the document shows the whole twin.
    put(dt, "device", lamp([POWER]))
    ask(dt, "twin/update", {"event_id": "a", "twin": {"watts": {"actual": {"value": "7"}}}})
    out = {p.topic: p.payload for p in dt.on_device(NS, "lamp", "twin/update", json.dumps(
        {"event_id": "o", "twin": {"watts": {"optional": False}}}).encode())}
    assert normal(out[f"{LAMP}/twin/update/result"]) == {"event_id": "o", "timestamp": "T",
                                                         "twin": {"watts": {"optional": False}}}
    document = out[f"{LAMP}/twin/update/document"]
    assert document is not None
    assert normal(document["twin"]["watts"]["current"]) == {"actual": {"value": "7", "metadata": {"timestamp": "T"}},
                                                            "optional": False, "metadata": {"type": "string"}}


@pytest.mark.parametrize("kind", ["double", "bytes", "stream"])
def test_a_device_creating_a_twin_of_a_mapper_type_is_refused_as_kubeedge_refuses_it(dt: DeviceTwin,
                                                                                     kind: str) -> None:
    # KubeEdge's dealTwinAdd checks a new twin's value with dtcommon.ValidateValue against the type the device
    # sends, which knows no double, bytes or stream: "the value type is not allowed". (A DeviceModel's DOUBLE
    # property is ours and takes numbers: test_desired_type_outranks_the_model_and_a_later_model_retypes_the_rest.)
    put(dt, "devicemodel", model(ratio="DOUBLE"), "lamp-model")
    put(dt, "device", lamp([POWER]))
    refused = ask(dt, "twin/update", {"event_id": "n", "twin": {"level": {"actual": {"value": "0.5"},
                                                                          "metadata": {"type": kind}}}})
    assert normal(refused) == {"event_id": "n", "timestamp": "T", "code": 400, "reason": twin.REASON_TYPE}
    taken = ask(dt, "twin/update", {"event_id": "m", "twin": {"ratio": {"actual": {"value": "0.5"},
                                                                        "metadata": {"type": kind}}}})
    assert taken["twin"]["ratio"]["metadata"] == {"type": "double"}  # the model's type, not the device's
    assert "level" not in ask(dt, "twin/get", {"event_id": "g"})["twin"]


@pytest.mark.parametrize("entry", [
    {"actual": {"value": "1", "metadata": "now"}},
    {"actual": {"value": "1", "metadata": {"timestamp": "now"}}},
    {"expected": {"value": "1", "metadata": {"timestamp": 1.5}}},
    {"actual": {"value": "1"}, "actual_version": {"edge": "2"}},
    {"actual": {"value": "1"}, "expected_version": [1]},
])
def test_what_go_cannot_read_into_a_twin_value_or_version_is_unmarshal_error(dt: DeviceTwin,
                                                                            entry: dict[str, Any]) -> None:
    # KubeEdge reads each twin into MsgTwin: a value's metadata is a ValueMetadata{Timestamp int64}, the versions
    # are TwinVersion{CloudVersion, EdgeVersion int64}; anything else fails UnmarshalDeviceTwinUpdate.
    put(dt, "device", lamp([POWER]))
    answer = ask(dt, "twin/update", {"event_id": "u", "twin": {"watts": entry}})
    assert normal(answer) == {"event_id": "", "timestamp": "T", "code": 400, "reason": twin.REASON_UNMARSHAL}


def test_a_twin_values_metadata_and_versions_go_can_read_are_taken_and_not_used(dt: DeviceTwin) -> None:
    put(dt, "device", lamp([POWER]))
    answer = ask(dt, "twin/update", {"event_id": "u", "twin": {"watts": {
        "actual": {"value": "7", "metadata": {"timestamp": 5, "other": "x"}},
        "actual_version": {"cloud": 1, "edge": 9}, "expected_version": None}}})
    assert answer["twin"]["watts"]["actual"]["metadata"]["timestamp"] != 5  # stamped by the edge, as KubeEdge
