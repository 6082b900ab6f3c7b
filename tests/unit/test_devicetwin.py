"""DeviceTwin against KubeEdge's documented JSON, on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from schemas import twin
from schemas.devicebus import Publication
from schemas.resource import ResourceKey

NS, DEV = "default", "thermo-1"
TOPIC = f"$hw/events/device/{NS}/{DEV}"


def device(desired: dict[str, str], rv: str = "10", node: str = "edge-1") -> dict[str, Any]:
    return {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
            "metadata": {"name": DEV, "namespace": NS, "resourceVersion": rv},
            "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": node,
                     "properties": [{"name": k, "desired": {"value": v}} for k, v in desired.items()]}}


MODEL = {"metadata": {"name": "thermo", "namespace": NS}, "spec": {"properties": [
    {"name": "temperature", "type": "FLOAT"}, {"name": "setpoint", "type": "INT"}]}}


@pytest.fixture
def dt(tmp_path: Path) -> DeviceTwin:
    d = DeviceTwin(TwinStore(tmp_path / "twin.db"), "edge-1")
    d.on_cloud(ResourceKey(NS, "devicemodel", "thermo"), MODEL)
    return d


def body(pub: Publication) -> dict[str, Any]:
    assert pub.payload is not None
    return pub.payload


def by_topic(pubs: list[Publication]) -> dict[str, Any]:
    return {p.topic: p for p in pubs}


def update(dt: DeviceTwin, body: dict[str, Any]) -> dict[str, Publication]:
    return by_topic(dt.on_device(NS, DEV, "twin/update", json.dumps(body).encode()))


def test_membership_and_desired_value_delta(dt: DeviceTwin) -> None:
    pubs = by_topic(dt.on_cloud(ResourceKey(NS, "device", DEV), device({"setpoint": "25"})))
    added = pubs["$hw/events/node/edge-1/membership/updated"].payload
    assert added["added_devices"][0]["id"] == f"{NS}/{DEV}"
    assert added["removed_devices"] is None  # a nil Go slice in KubeEdge's MembershipUpdate
    delta = pubs[f"{TOPIC}/twin/update/delta"]
    assert (delta.retain, delta.qos) == (True, 1)
    assert body(delta)["delta"] == {"setpoint": "25"}
    entry = body(delta)["twin"]["setpoint"]
    assert entry["expected"]["value"] == "25"
    assert entry["metadata"] == {"type": "int"}
    assert "expected_version" not in entry  # KubeEdge drops versions in answers


def test_update_result_document_and_no_delta_once_applied(dt: DeviceTwin) -> None:
    dt.on_cloud(ResourceKey(NS, "device", DEV), device({"setpoint": "25"}))
    pubs = update(dt, {"event_id": "e1", "timestamp": 1717000000000, "twin": {
        "temperature": {"actual": {"value": "23.5"}, "metadata": {"type": "float"}},
        "setpoint": {"actual": {"value": "25"}}}})
    result = body(pubs[f"{TOPIC}/twin/update/result"])
    assert result["event_id"] == "e1"
    assert set(result["twin"]) == {"temperature", "setpoint"}
    assert result["twin"]["temperature"]["actual"]["value"] == "23.5"
    assert isinstance(result["twin"]["temperature"]["actual"]["metadata"]["timestamp"], int)
    doc = body(pubs[f"{TOPIC}/twin/update/document"])
    assert doc["twin"]["temperature"]["last"] is None
    assert "actual" not in doc["twin"]["setpoint"]["last"]  # before: desired only
    assert doc["twin"]["setpoint"]["current"]["actual"]["value"] == "25"
    # The device now reports the desired value: as KubeEdge, no delta is sent (the retained one still names the
    # expected value; no zero-length message clears it).
    assert f"{TOPIC}/twin/update/delta" not in pubs
    report = dict(dt.take_reports())[ResourceKey(NS, "devicestatus", DEV)]
    twins = {t["propertyName"]: t for t in report["twins"]}
    assert twins["temperature"]["reported"]["value"] == "23.5"
    assert twins["setpoint"]["observedDesired"] == {"value": "25", "metadata": {"version": "10"}}
    assert dt.take_reports() == []  # nothing new


def test_errors_use_kubeedge_codes_and_change_nothing(dt: DeviceTwin) -> None:
    dt.on_cloud(ResourceKey(NS, "device", DEV), device({}))
    for request, code in [
        (b"{not json", twin.BAD_REQUEST),
        (json.dumps({"event_id": "x", "twin": {"bad name!": {"actual": {"value": "1"}}}}).encode(), twin.BAD_REQUEST),
        (json.dumps({"event_id": "x", "twin": {"temperature": {"actual": {"value": "hot"}}}}).encode(),
         twin.BAD_REQUEST),
        (json.dumps({"event_id": "x", "twin": {"t": {"actual": {"value": "x" * 600}}}}).encode(), twin.BAD_REQUEST),
        (json.dumps({"event_id": "x", "twin": {"t": {"actual": {"value": 3}}}}).encode(), twin.BAD_REQUEST),
        (b"[1,2]", twin.BAD_REQUEST),
    ]:
        (pub,) = dt.on_device(NS, DEV, "twin/update", request)
        assert pub.topic == f"{TOPIC}/twin/update/result"
        assert body(pub)["code"] == code
        assert set(body(pub)) == {"event_id", "timestamp", "code", "reason"}
    (unknown,) = dt.on_device(NS, "ghost", "twin/update", b'{"event_id":"g","twin":{"a":{"actual":{"value":"1"}}}}')
    assert body(unknown)["code"] == twin.NOT_FOUND
    assert body(unknown)["event_id"] == "g"
    assert dt.store.twins(f"{NS}/{DEV}") == {}


def test_every_update_while_a_target_is_outstanding_is_followed_by_the_delta(dt: DeviceTwin) -> None:
    # KubeEdge's DealDeviceTwin builds the delta after each device update it takes (even one that changes
    # nothing) and publishes it whenever some expected value differs; a refused update gets none.
    dt.on_cloud(ResourceKey(NS, "device", DEV), device({"setpoint": "25"}))
    for event, twins in [("r1", {"temperature": {"actual": {"value": "23.5"}}}), ("r2", {}),
                         ("r3", {"temperature": {"actual": {"value": "23.5"}}})]:
        pubs = update(dt, {"event_id": event, "twin": twins})
        delta = pubs[f"{TOPIC}/twin/update/delta"]
        assert (body(delta)["delta"], delta.retain) == ({"setpoint": "25"}, True)
    refused = update(dt, {"event_id": "r4", "twin": {"temperature": {"actual": {"value": "warm"}}}})
    assert list(refused) == [f"{TOPIC}/twin/update/result"]
    # Once nothing differs, nothing more is sent, as there.
    update(dt, {"event_id": "r5", "twin": {"setpoint": {"actual": {"value": "25"}}}})
    assert f"{TOPIC}/twin/update/delta" not in update(dt, {"event_id": "r6", "twin": {}})


def test_a_withdrawn_desired_value_leaves_the_delta_without_a_null(dt: DeviceTwin) -> None:
    # KubeEdge's DeviceTwinDelta.delta is a map[string]string: never null (a Go client reads null as "" and would
    # set the property to ""). A withdrawn target leaves the delta, which goes out again without it, so that the
    # retained one shows only current targets; the last one withdrawn leaves a delta with nothing to do.
    dt.on_cloud(ResourceKey(NS, "device", DEV), device({"setpoint": "25", "temperature": "20"}))
    reached = update(dt, {"event_id": "r", "twin": {"setpoint": {"actual": {"value": "25"}}}})
    assert body(reached[f"{TOPIC}/twin/update/delta"])["delta"] == {"temperature": "20"}
    pubs = by_topic(dt.on_cloud(ResourceKey(NS, "device", DEV), device({"temperature": "20"}, rv="11")))
    delta = body(pubs[f"{TOPIC}/twin/update/delta"])
    assert (delta["delta"], list(delta["twin"])) == ({"temperature": "20"}, ["temperature"])
    pubs = by_topic(dt.on_cloud(ResourceKey(NS, "device", DEV), device({}, rv="12")))
    delta = body(pubs[f"{TOPIC}/twin/update/delta"])
    assert (delta["delta"], delta["twin"]) == ({}, {})


def test_get_state_membership_and_removal(dt: DeviceTwin) -> None:
    dt.on_cloud(ResourceKey(NS, "device", DEV), device({"setpoint": "25"}))
    (got,) = dt.on_device(NS, DEV, "twin/get", b'{"event_id":"q"}')
    assert body(got)["event_id"] == "q"
    assert body(got)["twin"]["setpoint"]["expected"]["value"] == "25"
    assert set(body(got)["twin"]["setpoint"]) == {"expected", "optional", "metadata"}  # no versions, as KubeEdge
    (state,) = dt.on_device(NS, DEV, "state/update", b'{"event_id":"s","state":"online"}')
    assert body(state)["device"]["state"] == "online"
    assert body(state)["device"]["lastOnlineTime"]
    (bad_state,) = dt.on_device(NS, DEV, "state/update", b'{"state":"sleepy"}')
    assert body(bad_state)["code"] == twin.BAD_REQUEST
    (members,) = dt.membership_get(b'{"event_id":"m"}')
    assert [d["id"] for d in body(members)["devices"]] == [f"{NS}/{DEV}"]
    pubs = by_topic(dt.on_cloud(ResourceKey(NS, "device", DEV), None))
    assert body(pubs["$hw/events/node/edge-1/membership/updated"])["removed_devices"][0]["name"] == DEV
    assert dt.store.device(f"{NS}/{DEV}") is None


@pytest.mark.parametrize("update", [
    {"temperature": {"actual": {"value": "21.5"}}},  # actual only: the result reuses what the twin shows
    {"temperature": {"actual": {"value": "21.5"}, "expected": {"value": "22"}}},
    {"temperature": {"expected": {"value": "22"}}},
])
def test_an_existing_propertys_result_says_exactly_the_sides_the_request_set(dt: DeviceTwin,
                                                                              update: dict[str, Any]) -> None:
    """KubeEdge's twin/update result for a property that exists: the sides the request set, each with the
    update's timestamp (even an empty value), its optional flag and its type."""
    dt.on_cloud(ResourceKey(NS, "device", DEV), device({}))
    dt.on_device(NS, DEV, "twin/update", json.dumps({"twin": {"temperature": {"actual": {"value": "20"}}}}).encode())
    result = body(dt.on_device(NS, DEV, "twin/update", json.dumps({"event_id": "e", "twin": update}).encode())[0])
    shown = result["twin"]["temperature"]
    ts = next(side["metadata"]["timestamp"] for side in (shown.get("actual"), shown.get("expected")) if side)
    sent = update["temperature"]
    want = twin.entry(sent.get("expected", {}).get("value"), ts, sent.get("actual", {}).get("value"), ts, "float",
                      shown["optional"], set_only=True)
    assert shown == want
