"""Fuzzing the pure parts that bad input meets first: the envelope codec, the twin JSON, the stores' logic.

The cheap layer under tests/resilience/test_fuzz.py, which sends the same payloads to real processes;
both draw them from tests/support/fuzz_payloads.py (raw bytes, msgpack of wrong shapes, deep nesting,
payloads near and over the size limits, envelopes with exactly one field wrong, KubeEdge twin JSON with
exactly one thing wrong). Each property says what the parser or the component logic must do with them:
refuse with its own error type (never another exception), change nothing, count it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.cloudhub import queue as cloud_queue
from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from edge.eventbus.door import EventBus, EventBusSettings
from edge.metamanager import objectstore as meta_store
from edge.metamanager.manager import MetaManager
from edge.metamanager.store import MetaStore
from runtime.bus import Bus
from runtime.connection import Connection, ConnectionSettings, PublishTimeout
from runtime.counters import Counters
from runtime.url import BrokerUrl
from schemas import topics, twin
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, EnvelopeError, Group, Op, decode, salvage
from schemas.resource import ResourceKey
from schemas.twin import TwinError
from tests.support.fuzz_payloads import (
    DEVICE,
    NODE,
    NS,
    as_json,
    bad_answer_items,
    bad_json,
    bad_state_updates,
    bad_twin_updates,
    base_map,
    broken_envelopes,
    configmap,
    deep_list,
    deep_map,
    is_json_object,
    malformed_devices,
    msgpack_values,
    not_envelopes,
    oversized,
    pack,
    reading,
    refused_by_metamanager,
)

FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# == properties ===========================================================================================


@FUZZ
@given(st.one_of(not_envelopes, st.binary(max_size=2000)))
def test_decode_refuses_any_bytes_with_envelope_error_only(payload: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode(payload)
    salvage(payload)  # and never raises


@pytest.mark.parametrize("field", ["v", "id", "parent", "ts", "node", "src", "group", "op", "res", "rv"])
def test_a_field_nested_as_deep_as_msgpack_goes_is_refused(field: str) -> None:
    """Outside hypothesis, which raises the recursion limit while it runs a test: here, as in a component's
    network thread, repr() of a field nested 1020 levels raised RecursionError out of decode()."""
    payload = pack(base_map(**{field: deep_list(1020) if field in ("node", "src", "res") else deep_map(1020)}))
    with pytest.raises(EnvelopeError) as refused:
        decode(payload)
    assert refused.value.field == field
    assert len(str(refused.value)) < 500


@FUZZ
@given(broken_envelopes())
@example((pack({**base_map(), "x" * 100_000: 1}), "x" * 100_000))
def test_decode_names_the_one_broken_field(case: tuple[bytes, str]) -> None:
    payload, field = case
    with pytest.raises(EnvelopeError) as refused:
        decode(payload)
    assert refused.value.field == (field if len(field) <= 64 else field[:61] + "...")
    assert len(str(refused.value)) < 500  # a clear, bounded reason: it goes into logs and error replies
    salvage(payload)


@FUZZ
@given(oversized())
def test_oversized_envelopes_are_refused_before_parsing(payload: bytes) -> None:
    with pytest.raises(EnvelopeError) as refused:
        decode(payload)
    assert refused.value.field == "payload"


@FUZZ
@given(st.text(max_size=70), st.text(max_size=70))
@example("²", "1")
@example("1", "①")
def test_resource_version_comparison_never_raises(incoming: str, current: str) -> None:
    assert isinstance(meta_store.newer(incoming, current), bool)
    assert isinstance(cloud_queue.newer(incoming, current), bool)


@FUZZ
@given(st.one_of(bad_twin_updates, bad_state_updates, bad_json))
@example(b"[" * 30_000 + b"]" * 30_000)
@example(as_json({"twin": {"temperature": reading(metadata={"type": []})}}))
def test_twin_json_is_refused_with_twin_error_only(payload: bytes) -> None:
    with contextlib.suppress(TwinError):
        obj = twin.loads(payload)
        twin.parse_update(obj)
    with contextlib.suppress(TwinError):
        twin.parse_state(twin.loads(payload))


# -- DeviceTwin's logic on a real SQLite file --------------------------------------------------------------

MODEL = {"metadata": {"name": "thermo", "namespace": NS}, "spec": {"properties": [
    {"name": "temperature", "type": "FLOAT"}, {"name": "setpoint", "type": "INT"}]}}
DEVICE_OBJ = {"metadata": {"name": DEVICE, "namespace": NS, "resourceVersion": "7"},
              "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": NODE,
                       "properties": [{"name": "setpoint", "desired": {"value": "21"}}]}}


def dump(path: Path) -> str:
    """Every row of a SQLite file, in order; and the file must pass its integrity check."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return "\n".join(db.iterdump())


@pytest.fixture(scope="module")
def twin_node() -> Iterator[tuple[DeviceTwin, Path]]:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "twin.db"
        dt = DeviceTwin(TwinStore(path), NODE)
        dt.on_cloud(ResourceKey(NS, "devicemodel", "thermo"), MODEL)
        dt.on_cloud(ResourceKey(NS, "device", DEVICE), DEVICE_OBJ)
        dt.on_device(NS, DEVICE, "twin/update", as_json({"twin": {"temperature": reading("20.5")}}))
        dt.take_refused()
        yield dt, path
        dt.store.close()


@FUZZ
@given(request=st.sampled_from(["twin/update", "twin/get", "state/update"]),
       payload=st.one_of(bad_twin_updates, bad_state_updates, bad_json),
       device=st.sampled_from([DEVICE, "fz-unknown"]))
def test_device_requests_that_are_refused_change_nothing(twin_node: tuple[DeviceTwin, Path], request: str,
                                                         payload: bytes, device: str) -> None:
    dt, path = twin_node
    before = dump(path)
    if request == "twin/get" and device == DEVICE and is_json_object(payload):
        return  # a valid question about a known device: answered, not refused
    with dt.store.transaction():
        out = dt.on_device(NS, device, request, payload)
    assert len(out) == 1, out
    assert out[0].topic == topics.device(NS, device, f"{request}/result")
    assert out[0].payload is not None
    assert out[0].payload["code"] in (400, 404)
    assert dt.take_refused() == 1
    assert dump(path) == before


@FUZZ
@given(malformed_devices())
@example((ResourceKey(NS, "device", "fz-dev"), {"metadata": {"name": "fz-dev", "namespace": NS,
                                                             "resourceVersion": "²"}, "spec": {"nodeName": NODE}}))
def test_malformed_devices_from_the_cloud_are_refused(twin_node: tuple[DeviceTwin, Path],
                                                      case: tuple[ResourceKey, dict[str, Any]]) -> None:
    dt, path = twin_node
    key, obj = case
    rv = obj["metadata"].get("resourceVersion")
    before = dump(path)
    with dt.store.transaction():
        out = dt.on_cloud(key, obj)
    if rv == "²":  # well formed, with a version that is not a number: taken, as version 0
        assert dt.store.device(f"{NS}/fz-dev") is not None
        with dt.store.transaction():
            dt.on_cloud(key, None)
        return
    assert out == []
    assert dt.take_refused() == 1
    assert dump(path) == before


# -- MetaManager's logic: a bad envelope in a batch costs nothing but its own error ------------------------

STORED = ResourceKey(NS, "configmap", "kept")


@pytest.fixture(scope="module")
def meta_node() -> Iterator[tuple[MetaManager, Path]]:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "meta.db"
        manager = MetaManager(MetaStore(path), NODE)
        manager.on_cloud_batch([Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                                         res=STORED, rv="10", body=configmap(STORED))])
        yield manager, path
        manager.store.close()


@FUZZ
@given(st.lists(refused_by_metamanager(), min_size=1, max_size=5), st.booleans())
@example([(Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.DELETE, res=ResourceKey(NS, "pod", "fz"),
                    body={"metadata": [1]}), 0)], False)
def test_metamanager_answers_every_envelope_of_a_batch(meta_node: tuple[MetaManager, Path],
                                                       cases: list[tuple[Envelope, int]], with_valid: bool) -> None:
    """Refused envelopes are answered with their error and change nothing; a valid one in the same batch is
    still applied (one bad envelope must not fail the whole transaction). Code 0: acknowledged, not applied."""
    manager, path = meta_node
    before = dump(path)
    batch = [envelope for envelope, _ in cases]
    valid_key = ResourceKey(NS, "configmap", "fz-valid")
    if with_valid:
        batch.insert(len(batch) // 2, Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.INSERT,
                                               res=valid_key, rv="1", body=configmap(valid_key)))
    sends = manager.on_cloud_batch(batch)
    answers = {s.envelope.parent: s.envelope for s in sends if s.topic == topics.to_cloud()}
    for envelope, code in cases:
        answer = answers[envelope.id]
        assert answer.node == NODE
        assert answer.op == (Op.ERROR if code else Op.RESPONSE), answer
        assert answer.body.get("code") == code if code else answer.body["outcome"] in ("absent", "stale"), answer
    if with_valid:
        assert manager.store.get(valid_key) is not None
        assert manager.store.delete(valid_key, None).value == "deleted"
    assert dump(path) == before


def test_metamanager_takes_any_resource_version(tmp_path: Path) -> None:
    """resourceVersions are opaque strings; '²' is a digit to str.isdigit() but int() refuses it."""
    manager = MetaManager(MetaStore(tmp_path / "meta.db"), NODE)
    for rv, outcome in (("10", "applied"), ("²", "applied"), ("99999999999999999999999", "applied"), ("①", "applied"),
                        ("①", "stale")):
        envelope = Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.UPDATE, res=STORED, rv=rv,
                            body=configmap(STORED))
        answer = manager.on_cloud_batch([envelope])[-1].envelope  # after the forward to EdgeD, if applied
        assert answer.op == Op.RESPONSE
        assert answer.body == {"outcome": outcome}
    manager.store.close()


def test_metamanager_refuses_what_it_could_not_forward(meta_node: tuple[MetaManager, Path]) -> None:
    """Just under the size limit as it arrives, over it as the forward to EdgeD: refused (413), not stored."""
    manager, path = meta_node
    before = dump(path)
    key = ResourceKey(NS, "configmap", "fz-big")
    envelope = Envelope(node=NODE, src="c", group=Group.RESOURCE, op=Op.INSERT, res=key, rv="1", body=configmap(key),
                        id="a", ts=0)
    pad = DEFAULT_MAX_SIZE - len(envelope.encode()) - 10
    envelope = envelope.with_body({**configmap(key), "pad": "x" * pad})
    assert len(envelope.encode()) <= DEFAULT_MAX_SIZE
    decode(envelope.encode())
    (answer,) = manager.on_cloud_batch([envelope])
    assert answer.envelope.op == Op.ERROR
    assert answer.envelope.body["code"] == 413
    assert dump(path) == before


# -- EventBus: what it publishes for DeviceTwin is checked first --------------------------------------------

@FUZZ
@given(st.lists(bad_answer_items(deep_map(10_000)), min_size=1, max_size=4)
       | msgpack_values.filter(lambda v: not isinstance(v, list)))
def test_eventbus_refuses_answers_it_cannot_publish(items: Any) -> None:
    counters = Counters()
    door = EventBus(EventBusSettings(node=NODE), cast(Bus, SimpleNamespace(counters=counters)))
    answer = Envelope(node=NODE, src="devicetwin", group=Group.BUS, op=Op.UPDATE, body={"publish": items})
    assert not door.on_answers(answer, "")  # nothing to publish
    assert counters.get("refused") == (len(items) if isinstance(items, list) else 1)


# -- the connection: paho's refusals must not leak the publish window ---------------------------------------


def test_a_refused_publish_gives_its_window_slot_back() -> None:
    connection = Connection(ConnectionSettings(url=BrokerUrl.parse("mqtt://127.0.0.1:1"), client_id="fz",
                                               window=2))
    for topic in ("a/#", "", "a/+/b", "x" * 70000) * 3:
        with pytest.raises(ValueError):  # noqa: PT011 (paho's own message varies)
            connection.publish(topic, b"x", qos=1, timeout=0.1)
    with pytest.raises(ValueError):  # noqa: PT011
        connection.publish("ok", b"x", qos=7, timeout=0.1)
    assert connection.inflight == 0
    try:
        connection.publish("ok", b"x", qos=1, timeout=0.5)  # not connected: waits in the window, which has room
    except PublishTimeout:
        pytest.fail("the window was used up by publishes paho refused")
