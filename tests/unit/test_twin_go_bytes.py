"""DeviceTwin's answers byte for byte as KubeEdge's edge writes them (Go's encoding/json, EventBus's QoS).

Each test pins the exact bytes a client reads, with the run-dependent values (timestamps, generated
event ids) fixed first, so that a change in key order or escaping shows here. Pure functions and a
DeviceTwin on a temporary SQLite file: no broker, no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.devicetwin.component import Relist, failed_answers
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from schemas import twin
from schemas.devicebus import DeviceRequest, Publication, requests_body
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey


def fixed(obj: dict[str, Any] | None) -> dict[str, Any]:
    """``obj`` with its timestamp 0 and a generated event id "E" (keys stay where they are)."""
    assert obj is not None
    if "timestamp" in obj:
        obj["timestamp"] = 0
    return obj


# -- D1: Go writes map keys sorted ------------------------------------------------------------------------


def _entry(value: str) -> dict[str, Any]:
    return twin.entry(None, 0, value, 5, "int", True)


def test_twin_maps_are_written_with_sorted_keys_as_go_marshals_a_map() -> None:
    changed = {"zeta": _entry("1"), "alpha": None, "Mid": _entry("2")}
    assert twin.dumps(fixed(twin.result("e", changed))) == (
        b'{"event_id":"e","timestamp":0,"twin":{"Mid":{"actual":{"value":"2","metadata":{"timestamp":5}},'
        b'"optional":true,"metadata":{"type":"int"}},"alpha":null,"zeta":{"actual":{"value":"1","metadata":'
        b'{"timestamp":5}},"optional":true,"metadata":{"type":"int"}}}}')
    assert twin.dumps(fixed(twin.get_result("g", {"b": _entry("1"), "a": _entry("2")}))).startswith(
        b'{"event_id":"g","timestamp":0,"twin":{"a":')
    doc = twin.document("d", {"b": (None, _entry("1")), "a": (_entry("2"), None)})
    assert twin.dumps(fixed(doc)) == (
        b'{"event_id":"d","timestamp":0,"twin":{"a":{"last":{"actual":{"value":"2","metadata":{"timestamp":5}},'
        b'"optional":true,"metadata":{"type":"int"}},"current":null},"b":{"last":null,"current":{"actual":'
        b'{"value":"1","metadata":{"timestamp":5}},"optional":true,"metadata":{"type":"int"}}}}}')
    want = {"y": twin.entry("2", 7, None, 0, "", False), "x": twin.entry("1", 7, "0", 7, "", False)}
    delta = fixed(twin.delta(want))
    delta["event_id"] = "E"
    assert twin.dumps(delta) == (
        b'{"event_id":"E","timestamp":0,"twin":{"x":{"expected":{"value":"1","metadata":{"timestamp":7}},'
        b'"actual":{"value":"0","metadata":{"timestamp":7}},"optional":false,"metadata":{}},"y":{"expected":'
        b'{"value":"2","metadata":{"timestamp":7}},"optional":false,"metadata":{}}},"delta":{"x":"1","y":"2"}}')


# -- D2: Go writes non-ASCII as raw UTF-8 and escapes <, >, & ----------------------------------------------


def test_strings_are_escaped_as_go_marshals_them() -> None:
    # An echoed event_id and a reason quoting the payload are where a device's own characters come back.
    answer = twin.error("köln<1>&\u2028", 400, twin.get_unmarshal("twin", "{é}".encode(), "bad"))
    assert twin.dumps(fixed(answer)) == (
        b'{"event_id":"k\xc3\xb6ln\\u003c1\\u003e\\u0026\\u2028","timestamp":0,"code":400,'
        b'"reason":"Unmarshal twin info {\xc3\xa9} failed , err: bad"}')
    # Control characters as Go writes them; a lone surrogate (json.loads lets "\ud800" through) as the U+FFFD
    # Go decodes it to, instead of a UnicodeEncodeError.
    assert twin.dumps({"event_id": "a\n\x01\ud800b"}) == b'{"event_id":"a\\n\\u0001\xef\xbf\xbdb"}'
    assert twin.dumps(twin.membership_device("default/l", "l", "Flur \u2013 Süd")) == \
        '{"id":"default/l","name":"l","description":"Flur \u2013 Süd"}'.encode()


# -- D3: KubeEdge's EventBus publishes every answer with QoS 1 ------------------------------------------------


NS, NODE = "default", "edge-1"


def _device_twin(tmp_path: Path) -> DeviceTwin:
    dt = DeviceTwin(TwinStore(tmp_path / "twin.db"), NODE)
    dt.on_cloud(ResourceKey(NS, "device", "lamp"), {
        "apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
        "metadata": {"name": "lamp", "namespace": NS, "resourceVersion": "3", "labels": {"description": "hall"}},
        "spec": {"nodeName": NODE, "properties": [{"name": "setpoint", "desired": {"value": "25"}}]}})
    return dt


def test_every_answer_goes_out_with_qos_1_as_kubeedges_eventbus_publishes(tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)
    pubs: list[Publication] = []
    for request, body in [("twin/update", b'{"event_id":"u","twin":{"t":{"actual":{"value":"1"}}}}'),
                          ("twin/update", b"{bad"), ("twin/update", b'{"event_id":"x"}'),
                          ("twin/get", b'{"event_id":"g"}'), ("twin/get", b"{bad"),
                          ("state/update", b'{"state":"online"}'), ("state/update", b'{"state":"gone"}')]:
        pubs += dt.on_device(NS, "lamp", request, body)
    pubs += dt.on_device(NS, "ghost", "twin/update", b'{"event_id":"y","twin":{}}')
    pubs += dt.membership_get(b'{"event_id":"m"}') + dt.membership_get(b"{bad")
    assert len(pubs) == 12  # results, the document, the delta (setpoint is outstanding), errors, the gets' answers
    assert {p.qos for p in pubs} == {1}


# -- D10: what KubeEdge cannot read into its DeviceTwinUpdate is answered with an empty event_id -------------


def test_a_request_refused_while_reading_it_is_answered_with_an_empty_event_id(tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)

    def answer(body: bytes) -> bytes:
        (pub,) = dt.on_device(NS, "lamp", "twin/update", body)
        return twin.dumps(fixed(pub.payload))

    assert answer(b'{"event_id":"e1"}') == \
        b'{"event_id":"","timestamp":0,"code":400,"reason":"Update twin error, key:twin does not exist"}'
    assert answer(b'{"event_id":"e2","twin":{"a b":{"actual":{"value":"1"}}}}').startswith(
        b'{"event_id":"","timestamp":0,"code":400,"reason":"The key of twin must only include')
    assert answer(b'{"event_id":"e3","twin":{"t":{"actual":{"value":7}}}}') == (
        b'{"event_id":"","timestamp":0,"code":400,"reason":'
        b'"Unmarshal update request body failed, please check the request"}')
    # Read, then refused: the request's event_id, as KubeEdge's DealDeviceTwin answers.
    assert answer(b'{"event_id":"e4","twin":{"setpoint":null}}') == \
        b'{"event_id":"e4","timestamp":0,"code":400,"reason":"setpoint: the property is not optional and cannot ' \
        b'be deleted"}'
    (unknown,) = dt.on_device(NS, "ghost", "twin/update", b'{"event_id":"e5","twin":{}}')
    assert twin.dumps(fixed(unknown.payload)) == \
        b'{"event_id":"e5","timestamp":0,"code":404,"reason":"update rejected due to the device is not existed"}'


# -- D20: the state is stored as the device sent it ---------------------------------------------------------


def test_the_state_is_kept_as_sent_for_devices_and_lower_cased_for_the_cloud(tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)
    dt.on_device(NS, "lamp", "state/update", b'{"state":"Online"}')
    (got,) = dt.membership_get(b'{"event_id":"m"}')
    devices = fixed(got.payload)["devices"]
    devices[0]["last_online"] = "TIME"
    assert twin.dumps(fixed(got.payload)) == (
        b'{"event_id":"m","timestamp":0,"devices":[{"id":"default/lamp","name":"lamp","description":"hall",'
        b'"state":"Online","last_online":"TIME"}]}')
    ((_key, status),) = dt.take_reports()
    assert status["state"] == "online"


# -- D21: no last_online in membership/get once the device is offline --------------------------------------


def test_membership_get_shows_no_last_online_time_for_an_offline_device(tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)
    dt.on_device(NS, "lamp", "state/update", b'{"state":"online"}')
    dt.on_device(NS, "lamp", "state/update", b'{"state":"offline"}')
    (got,) = dt.membership_get(b'{"event_id":"m"}')
    assert twin.dumps(fixed(got.payload)) == (
        b'{"event_id":"m","timestamp":0,"devices":[{"id":"default/lamp","name":"lamp","description":"hall",'
        b'"state":"offline"}]}')
    ((_key, status),) = dt.take_reports()
    assert status["lastOnlineTime"]  # the Device status still says when it was last online


# -- D22: the description comes from the label only ---------------------------------------------------------


def test_the_description_is_the_label_as_kubeedges_cloud_reads_it(tmp_path: Path) -> None:
    dt = DeviceTwin(TwinStore(tmp_path / "twin.db"), NODE)
    meta = {"name": "lamp", "namespace": NS, "annotations": {"description": "not this"},
            "labels": {"description": "hall"}}
    pubs = dt.on_cloud(ResourceKey(NS, "device", "lamp"), {"metadata": meta, "spec": {"nodeName": NODE}})
    added = next(p.payload for p in pubs if p.topic.endswith("/membership/updated"))
    assert twin.dumps(fixed(added) | {"event_id": "E"}) == (
        b'{"event_id":"E","timestamp":0,"added_devices":[{"id":"default/lamp","name":"lamp","description":"hall"}],'
        b'"removed_devices":null}')
    del meta["labels"]
    dt.on_cloud(ResourceKey(NS, "device", "lamp"), {"metadata": meta, "spec": {"nodeName": NODE}})
    (got,) = dt.membership_get(b'{"event_id":"m"}')
    assert twin.dumps(fixed(got.payload)) == \
        b'{"event_id":"m","timestamp":0,"devices":[{"id":"default/lamp","name":"lamp"}]}'


# -- D23: a device dropped by a full resync is announced by its id alone -------------------------------------


def test_a_device_missing_from_a_full_resync_is_announced_by_id_as_kubeedges_membership_detail(
        tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)
    pubs = dt.replace_devices({})
    removed = next(p.payload for p in pubs if p.topic == f"$hw/events/node/{NODE}/membership/updated")
    assert twin.dumps(fixed(removed) | {"event_id": "E"}) == \
        b'{"event_id":"E","timestamp":0,"added_devices":null,"removed_devices":[{"id":"default/lamp"}]}'
    assert dt.store.device(f"{NS}/lamp") is None


# -- D16: no zero-length (non-JSON) delta while the device is a member ---------------------------------------


def _deltas(pubs: list[Publication]) -> list[Publication]:
    return [p for p in pubs if p.topic == f"$hw/events/device/{NS}/lamp/twin/update/delta"]


def _lamp(setpoint: str) -> dict[str, Any]:
    return {"metadata": {"name": "lamp", "namespace": NS, "resourceVersion": "4"},
            "spec": {"nodeName": NODE, "properties": [{"name": "setpoint", "desired": {"value": setpoint}}]}}


def _settled_bytes(pub: Publication) -> bytes:
    assert (pub.qos, pub.retain) == (1, True)
    payload = fixed(pub.payload) | {"event_id": "E"}
    payload["twin"]["setpoint"]["expected"]["metadata"]["timestamp"] = 0
    payload["twin"]["setpoint"]["actual"]["metadata"]["timestamp"] = 0
    return twin.dumps(payload)


SETTLED = (b'{"event_id":"E","timestamp":0,"twin":{"setpoint":{"expected":{"value":"25","metadata":{"timestamp":0}},'
           b'"actual":{"value":"25","metadata":{"timestamp":0}},"optional":false,"metadata":{"type":"string"}}},'
           b'"delta":{}}')


def test_the_retained_delta_is_never_cleared_with_an_empty_message_while_the_device_is_a_member(
        tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)
    report = b'{"event_id":"r","twin":{"setpoint":{"actual":{"value":"25"}}}}'
    # The device reaches its target: KubeEdge sends no delta, nor do we (the retained one names 25, still true).
    assert _deltas(dt.on_device(NS, "lamp", "twin/update", report)) == []
    # A new target, then withdrawn back to what the device has: the retained delta (30) would mislead a device
    # that connects later, so it is replaced by a JSON delta with nothing to do, not a zero-length message.
    (to_30,) = _deltas(dt.on_cloud(ResourceKey(NS, "device", "lamp"), _lamp("30")))
    assert (to_30.payload or {})["delta"] == {"setpoint": "30"}
    (settled,) = _deltas(dt.on_cloud(ResourceKey(NS, "device", "lamp"), _lamp("25")))
    assert _settled_bytes(settled) == SETTLED
    assert _deltas(dt.on_device(NS, "lamp", "twin/update", report)) == []  # said once
    # After a restart what is retained is not known: the first update says it again, as JSON.
    again = DeviceTwin(dt.store, NODE)
    (restarted,) = _deltas(again.on_device(NS, "lamp", "twin/update", report))
    assert _settled_bytes(restarted) == SETTLED
    # Removal still clears it (kept: the device is no member any more, and a later Device of the name must not
    # find the old target).
    (cleared,) = _deltas(again.on_cloud(ResourceKey(NS, "device", "lamp"), None))
    assert (cleared.payload, cleared.retain) == (None, True)
    assert _deltas(again.on_cloud(ResourceKey(NS, "device", "lamp"), _lamp("25")))[0].payload is not None


# -- D13: a twin/update whose batch could not be saved is answered 500, as KubeEdge answers a failed write ----


def test_updates_in_a_batch_that_could_not_be_saved_are_answered_500_with_the_store_error(tmp_path: Path) -> None:
    dt = _device_twin(tmp_path)
    requests = [DeviceRequest(NS, "lamp", "twin/update", b'{"event_id":"u1","twin":{"t":{"actual":{"value":"1"}}}}'),
                DeviceRequest(NS, "lamp", "twin/update", b'{"event_id":"u2"}'),
                DeviceRequest(NS, "lamp", "twin/get", b'{"event_id":"g"}'),
                DeviceRequest(NS, "lamp", "state/update", b'{"state":"online"}')]
    batch: list[Envelope | Relist] = [
        Envelope(NODE, "eventbus", Group.TWIN, Op.UPDATE, body=requests_body(requests)),
        Envelope(NODE, "metamanager", Group.TWIN, Op.UPDATE, body={}), Relist({})]
    answers = failed_answers(dt, batch, "database or disk is full")
    assert [(p.topic, p.qos, p.retain) for p in answers] == [(f"$hw/events/device/{NS}/lamp/twin/update/result",
                                                             1, False)] * 2
    assert [twin.dumps(fixed(p.payload)) for p in answers] == [
        b'{"event_id":"u1","timestamp":0,"code":500,"reason":"database or disk is full"}',
        # refused before any write, as KubeEdge does: the 400 it always gets
        b'{"event_id":"","timestamp":0,"code":400,"reason":"Update twin error, key:twin does not exist"}']
