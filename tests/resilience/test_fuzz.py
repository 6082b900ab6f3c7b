"""Bad input on real processes: hypothesis-driven payloads on every inbox topic and every device topic.

Each test starts one set of real processes on a real broker (mosquitto as shipped), once, and then runs a
hypothesis loop per topic: every example is published, and before the next one the suite checks that

- every process is still alive;
- the component that must refuse it counted it (``invalid``, ``refused``, ``wrong_node``,
  ``bad_device_topic`` or ``bad_link_topic``, read from the component's own ``hub``/``query`` answer), and
  where the sender is owed an answer, the answer came with the right code (MetaManager's error to the
  cloud, the device's error JSON on its result topic, CloudHub's error on the node's down topic).

After each topic: no component counted more than it was sent, none hit an unexpected exception
(``handler_errors``, ``batch_errors``), the counter names stayed a bounded set, and the SQLite stores are
byte for byte what they were (and pass ``PRAGMA integrity_check``). At the end a valid message is still
served, and every process started here has exited (status 0 on SIGTERM) and is gone.

Covered: on an edge broker, MetaManager, DeviceTwin, EventBus and EdgeHub (every inbox, ``from-cloud``,
``to-cloud``, the node's ``down`` and ``state`` link topics, ``cloud-link``, MetaManager's status, and KubeEdge's
device, membership and upload topics); on a cloud broker, CloudHub (its inbox, every node's ``up`` topic) and,
against a real API server, EdgeController and DeviceController (their ``from-edge`` topics).

The payloads come from tests/support/fuzz_payloads.py (tests/unit/test_fuzz_decoders.py sends the same ones to
the parsers in-process); the rig that runs the processes and checks each example is tests/support/fuzz_rig.py.
``EDGEHIVE_FUZZ_EXAMPLES`` sets the examples per topic (default 200) for a longer soak.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from kubernetes import client as k8s

from schemas import topics
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, decode
from schemas.names import is_namespace, is_object_name
from schemas.resource import ResourceKey
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.processes import wait_until
from tests.support import devices as device_objects
from tests.support.fuzz_payloads import (
    DEVICE,
    NODE,
    NS,
    OTHER_NODE,
    bad_answer_items,
    bad_json,
    bad_state_updates,
    bad_twin_updates,
    base_map,
    broken_envelopes,
    deep_list,
    deep_map,
    json_values,
    malformed_devices,
    msgpack_values,
    not_a_string,
    not_envelopes,
    oversized,
    refused_by_metamanager,
)
from tests.support.fuzz_rig import (
    EXAMPLES,
    FUZZER,
    WAIT_S,
    Case,
    Rig,
    assert_counters_sane,
    device_error,
    envelope_bytes,
    on_topic,
    reply_to,
)

pytestmark = pytest.mark.slow

@pytest.fixture
def rigs(edgehive_broker: BrokerFactory, tmp_path: Path) -> Iterator[Callable[[topics.Side], Rig]]:
    started: list[Rig] = []

    def make(side: topics.Side) -> Rig:
        rig = Rig(edgehive_broker("mosquitto"), side, tmp_path)
        started.append(rig)
        return rig

    yield make
    for rig in started:
        rig.close()


# -- the edge: EdgeHub, MetaManager, DeviceTwin, EventBus -----------------------------------------------------

EDGE_TOPICS = {
    # topic -> the edge component that subscribes to it (and so must count what is invalid there)
    topics.inbox(topics.Side.EDGE, "metamanager"): "metamanager",
    topics.from_cloud("metamanager"): "metamanager",
    topics.cloud_link(): "metamanager",
    topics.inbox(topics.Side.EDGE, "devicetwin"): "devicetwin",
    topics.status("metamanager"): "devicetwin",
    topics.inbox(topics.Side.EDGE, "eventbus"): "eventbus",
    topics.inbox(topics.Side.EDGE, "edgehub"): "edgehub",
    topics.to_cloud(): "edgehub",
    topics.link_down(NODE): "edgehub",
    topics.link_state(NODE): "edgehub",
}
MODEL = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel",
         "metadata": {"name": "thermo", "namespace": NS, "uid": "m-1", "resourceVersion": "3"},
         "spec": {"properties": [{"name": "temperature", "type": "FLOAT"}, {"name": "setpoint", "type": "INT"}]}}
DEVICE_OBJ = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device",
              "metadata": {"name": DEVICE, "namespace": NS, "uid": "d-1", "resourceVersion": "4"},
              "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": NODE,
                       "properties": [{"name": "setpoint", "desired": {"value": "21"}}]}}
CONFIGMAP = {"metadata": {"name": "settings", "namespace": NS, "uid": "c-1", "resourceVersion": "5"},
             "data": {"mode": "fast"}}


def edge_argv(component: str, rig: Rig) -> list[str]:
    extra = {
        "edgehub": ["--outbox", str(rig.stores["edgehub"]), "--keepalive-s", "3", "--resend-s", "3"],
        "metamanager": ["--db", str(rig.stores["metamanager"])],
        "devicetwin": ["--db", str(rig.stores["devicetwin"]), "--report-interval-s", "0.2"],
        "eventbus": [],
    }[component]
    return [sys.executable, "-m", f"edge.{component}", "--node", NODE, "--broker", rig.broker.url(), *extra]


def from_cloud(op: Op, key: ResourceKey, body: Any, rv: str) -> Envelope:
    return Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=op, res=key, rv=rv, body=body)


def send_down(rig: Rig, envelope: Envelope) -> Envelope:
    """As the bridge would deliver it: on the node's down topic; returns MetaManager's answer."""
    rig.publisher.publish(topics.link_down(NODE), envelope.encode())
    answer = rig.await_message(reply_to(envelope.id, None), f"MetaManager's answer to {envelope.res}")
    return decode(answer.payload)


def device_request(rig: Rig, suffix: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A valid request from the known device, and its answer (which must not be an error)."""
    topic = topics.device(NS, DEVICE, suffix)
    event = f"{payload['event_id']}-{time.monotonic_ns()}"
    rig.publisher.publish(topic, json.dumps({**payload, "event_id": event}).encode())
    message = rig.await_message(lambda m: m.topic == f"{topic}/result" and json.loads(m.payload).get(
        "event_id") == event, f"the answer on {topic}/result")
    answer = json.loads(message.payload)
    assert "code" not in answer, answer
    assert isinstance(answer, dict)
    return answer


@pytest.fixture
def edge(rigs: Callable[[topics.Side], Rig]) -> Rig:
    """The four edge components on their broker, holding a ConfigMap, a DeviceModel, a Device with a reading
    and (in EdgeHub's outbox, as the link is down) that device's status for the cloud."""
    rig = rigs(topics.Side.EDGE)
    rig.stores = {"metamanager": rig.workdir / "meta.db", "devicetwin": rig.workdir / "devicetwin.db",
                  "edgehub": rig.workdir / "outbox.db"}
    rig.start({name: edge_argv(name, rig) for name in ("metamanager", "devicetwin", "eventbus", "edgehub")})
    rig.watcher.subscribe(topics.to_cloud())
    rig.watcher.subscribe(f"{topics.HW_EVENTS}/#")
    objects: list[tuple[ResourceKey, dict[str, Any]]] = [
        (ResourceKey(NS, "configmap", "settings"), CONFIGMAP), (ResourceKey(NS, "devicemodel", "thermo"), MODEL),
        (ResourceKey(NS, "device", DEVICE), DEVICE_OBJ)]
    for key, obj in objects:
        answer = send_down(rig, from_cloud(Op.INSERT, key, obj, obj["metadata"]["resourceVersion"]))
        assert answer.body == {"outcome": "applied"}
    wait_until(lambda: device_request(rig, "twin/get", {"event_id": "setup"}).get("twin"), timeout=WAIT_S,
               what="DeviceTwin to know the device")
    device_request(rig, "twin/update", {"event_id": "setup", "twin": {"temperature": {
        "actual": {"value": "20.5"}, "metadata": {"type": "float"}}}})
    wait_until(lambda: rig.report("edgehub").get("outbox_size") == 1, timeout=WAIT_S,
               what="the device's status in the outbox")
    return rig


def rarely(rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any], one_in: int = 8) -> st.SearchStrategy[Any]:
    """``rare`` about once in ``one_in`` draws: for payloads of a MiB, which cost time on every hop."""
    return st.integers(1, one_in).flatmap(lambda n: rare if n == 1 else usual)


def invalid_on(topic: str, component: str) -> st.SearchStrategy[Case]:
    """Anything that is not an acceptable envelope: the component subscribed to ``topic`` counts it."""
    payloads = st.one_of(not_envelopes, broken_envelopes().map(lambda case: case[0]),
                         rarely(oversized(), broken_envelopes().map(lambda case: case[0])),
                         broken_envelopes(lambda: base_map(group="hub", op="query", res=None)).map(lambda c: c[0]))
    return payloads.map(lambda payload: Case(topic, payload, {component: 1}))


def via_link_down(case: tuple[Envelope, int]) -> Case:
    """What MetaManager must refuse, sent as the cloud would (EdgeHub turns away another node's first)."""
    envelope, code = case
    if envelope.node != NODE:
        return Case(topics.link_down(NODE), envelope_bytes(envelope), {"edgehub": 1})
    return Case(topics.link_down(NODE), envelope_bytes(envelope), {"metamanager": 1}, reply_to(envelope.id, code))


def direct_to_metamanager(case: tuple[Envelope, int]) -> Case:
    envelope, code = case
    return Case(topics.from_cloud("metamanager"), envelope_bytes(envelope), {"metamanager": 1},
                reply_to(envelope.id, code))


@st.composite
def too_large_to_forward(draw: st.DrawFn, topic: str) -> Case:
    """Just under the size limit as the cloud sent it, over it once MetaManager's forward to EdgeD or
    DeviceTwin carries the same object with its own longer id and name: refused (413), not stored."""
    key = ResourceKey(NS, draw(st.sampled_from(["configmap", "secret", "pod", "device"])), "fz-big")
    envelope = Envelope(node=NODE, src="c", group=Group.RESOURCE, op=Op.INSERT, res=key, rv="1", id="a", ts=0,
                        body={"metadata": {"name": key.name, "namespace": NS}})
    room = DEFAULT_MAX_SIZE - len(envelope.encode()) - 16  # the "pad" key and its str32 header
    envelope = envelope.with_body({**envelope.body, "pad": "x" * (room - draw(st.integers(0, 30)))})
    return Case(topic, envelope.encode(), {"metamanager": 1}, reply_to(envelope.id, 413))


@st.composite
def unknown_deletes(draw: st.DrawFn) -> Case:
    """A delete of something the node does not hold, with a body of any shape: acknowledged ("absent")."""
    key = ResourceKey(NS, draw(st.sampled_from(["configmap", "pod", "device", "secret"])), "fz-gone")
    body = draw(st.fixed_dictionaries({"metadata": msgpack_values | st.just([1])}) | msgpack_values)
    envelope = Envelope(node=NODE, src="cloudhub", group=Group.RESOURCE, op=Op.DELETE, res=key, rv="9", body=body)
    return Case(topics.link_down(NODE), envelope_bytes(envelope), {}, reply_to(envelope.id, None))


def without_unknown_deletes_tombstones(dump: dict[str, str]) -> dict[str, str]:
    """The stores' rows less the tombstones of ``unknown_deletes``' keys: a delete of what the node does not hold is
    valid and leaves a tombstone (so that an older insert redelivered after it is refused), the one row it may
    write; every other row, objects included, must stay as it was."""
    return {name: "\n".join(line for line in rows.splitlines()
                            if not (line.startswith('INSERT INTO "tombstone"') and "/fz-gone'" in line))
            for name, rows in dump.items()}


@st.composite
def hub_from_the_cloud(draw: st.DrawFn) -> Case:
    op = draw(st.sampled_from([o for o in Op if o not in (Op.RESPONSE, Op.ERROR)]))
    envelope = Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=op, body=draw(msgpack_values))
    return Case(topics.link_down(NODE), envelope_bytes(envelope), {"edgehub": 1})


@st.composite
def another_nodes(draw: st.DrawFn, topic: str, component: str) -> Case:
    envelope = Envelope(node=draw(st.sampled_from([OTHER_NODE, "edge-10", "edge-1.other"])), src=FUZZER,
                        group=draw(st.sampled_from(Group)), op=draw(st.sampled_from(Op)),
                        res=draw(st.none() | st.just(ResourceKey(NS, "podstatus", "p"))), body=draw(msgpack_values))
    return Case(topic, envelope_bytes(envelope), {component: 1})


@st.composite
def metamanager_queries(draw: st.DrawFn) -> Case:
    """Queries from the node's modules that MetaManager must answer with an error."""
    group = draw(st.sampled_from([Group.META, Group.RESOURCE]))
    if draw(st.booleans()):  # an object this node does not hold (the link is down: no cloud to ask)
        kind = draw(st.sampled_from(["configmap", "secret", "pod", "device", "widget"]))
        query = Envelope(node=NODE, src=FUZZER, group=group, op=Op.QUERY, res=ResourceKey(NS, kind, "fz-none"))
        return Case(topics.inbox(topics.Side.EDGE, "metamanager"), b"", {"metamanager": 1}, request=query, code=404)
    body = draw(st.fixed_dictionaries({"list": not_a_string.filter(lambda x: x is not None)})
                | st.fixed_dictionaries({"limit": st.integers(-(2**63), -1) | st.integers(501, 2**64 - 1)
                                         | st.text(min_size=1, max_size=3) | st.lists(st.integers(0, 3), min_size=1)})
                | st.fixed_dictionaries({"after": not_a_string.filter(lambda x: bool(x) and x is not True)}))
    query = Envelope(node=NODE, src=FUZZER, group=group, op=Op.QUERY, body=body)
    return Case(topics.inbox(topics.Side.EDGE, "metamanager"), b"", {"metamanager": 1}, request=query, code=400)


_bad_names = st.one_of(st.sampled_from(["", "UPPER", "a_b", "-x", "x" * 254, "a/b", "é"]), not_a_string)
bad_request_items = st.one_of(
    msgpack_values.filter(lambda v: not (isinstance(v, list) and len(v) == 4)),
    st.tuples(st.just(NS), st.just(DEVICE), not_a_string.filter(lambda x: not isinstance(x, str)),
              st.binary(max_size=20)).map(list),
    st.tuples(st.just(NS), st.just(DEVICE), st.sampled_from(["twin/update", "twin/get"]),
              not_a_string.filter(lambda x: not isinstance(x, bytes))).map(list),
    st.tuples(_bad_names, st.just(DEVICE), st.sampled_from(["twin/update", "state/update"]),
              st.binary(max_size=20)).map(list),
    st.tuples(st.just(NS), _bad_names, st.just("twin/get"), st.binary(max_size=20)).map(list),
    st.tuples(st.just(NS), st.just(DEVICE), st.text(max_size=20).filter(
        lambda t: t not in (*topics.DEVICE_REQUESTS, "membership/get")), st.binary(max_size=20)).map(list),
    st.tuples(st.just(NS), st.just("fz-unknown"), st.sampled_from(topics.DEVICE_REQUESTS),
              st.binary(max_size=50) | json_values.map(lambda v: json.dumps(v).encode())).map(list),
    st.tuples(st.just(NS), st.just(DEVICE), st.just("twin/update"), bad_twin_updates).map(list),
    st.tuples(st.just(""), st.just(""), st.just("membership/get"), bad_json).map(list),
)
"""Items of EventBus's request list to DeviceTwin, each of which DeviceTwin must refuse (and count)."""


@st.composite
def devicetwin_inbox(draw: st.DrawFn) -> Case:
    topic = topics.inbox(topics.Side.EDGE, "devicetwin")
    if draw(st.booleans()):
        key, obj = draw(malformed_devices())
        envelope = Envelope(node=NODE, src="metamanager", group=Group.RESOURCE,
                            op=draw(st.sampled_from([Op.INSERT, Op.UPDATE, Op.PATCH])), res=key, rv="8", body=obj)
        return Case(topic, envelope_bytes(envelope), {"devicetwin": 1})
    if draw(st.booleans()):
        items = draw(st.lists(bad_request_items, min_size=1, max_size=5))
        envelope = Envelope(node=NODE, src="eventbus", group=Group.TWIN, op=Op.UPDATE, body={"requests": items})
        return Case(topic, envelope_bytes(envelope), {"devicetwin": len(items)})
    body = draw(msgpack_values.filter(lambda v: not isinstance(v, dict))
                | st.fixed_dictionaries({"requests": msgpack_values.filter(lambda v: not isinstance(v, list))}))
    envelope = Envelope(node=NODE, src="eventbus", group=Group.TWIN, op=Op.UPDATE, body=body)
    return Case(topic, envelope_bytes(envelope), {"devicetwin": 1})


@st.composite
def eventbus_inbox(draw: st.DrawFn) -> Case:
    items = draw(st.lists(bad_answer_items(deep_map(1015)), min_size=1, max_size=4)
                 | msgpack_values.filter(lambda v: not isinstance(v, list)))
    envelope = Envelope(node=NODE, src="devicetwin", group=Group.BUS, op=Op.UPDATE, body={"publish": items})
    return Case(topics.inbox(topics.Side.EDGE, "eventbus"), envelope_bytes(envelope),
                {"eventbus": len(items) if isinstance(items, list) else 1})


@st.composite
def ignored_by_edgehub(draw: st.DrawFn) -> Case:
    """Valid envelopes on EdgeHub's inbox that are no status query: nothing to do, nothing changes."""
    envelope = Envelope(node=draw(st.sampled_from([NODE, OTHER_NODE])), src=FUZZER,
                        group=draw(st.sampled_from([g for g in Group if g != Group.HUB])),
                        op=draw(st.sampled_from(Op)), body=draw(msgpack_values | st.text(min_size=1000, max_size=5000)))
    return Case(topics.inbox(topics.Side.EDGE, "edgehub"), envelope_bytes(envelope))


def test_edge_envelope_topics(edge: Rig) -> None:
    """Every topic the edge components read envelopes from: invalid bytes and envelopes everywhere, and on
    each topic the valid-but-wrong ones its component must refuse."""
    rig = edge
    store = rig.dump()
    totals = {name: rig.counters(name) for name in rig.processes}
    families: dict[str, st.SearchStrategy[Case]] = {
        topic: invalid_on(topic, component) for topic, component in EDGE_TOPICS.items()}
    families[topics.link_down(NODE)] = st.one_of(
        families[topics.link_down(NODE)], refused_by_metamanager().map(via_link_down), hub_from_the_cloud(),
        another_nodes(topics.link_down(NODE), "edgehub"),
        rarely(too_large_to_forward(topics.link_down(NODE)), unknown_deletes(), 3))
    families[topics.from_cloud("metamanager")] = st.one_of(
        families[topics.from_cloud("metamanager")],
        rarely(too_large_to_forward(topics.from_cloud("metamanager")),
               refused_by_metamanager().map(direct_to_metamanager), 6))
    families[topics.inbox(topics.Side.EDGE, "metamanager")] = st.one_of(
        families[topics.inbox(topics.Side.EDGE, "metamanager")], metamanager_queries())
    families[topics.inbox(topics.Side.EDGE, "devicetwin")] = st.one_of(
        families[topics.inbox(topics.Side.EDGE, "devicetwin")], devicetwin_inbox())
    families[topics.inbox(topics.Side.EDGE, "eventbus")] = st.one_of(
        families[topics.inbox(topics.Side.EDGE, "eventbus")], eventbus_inbox())
    families[topics.inbox(topics.Side.EDGE, "edgehub")] = st.one_of(
        families[topics.inbox(topics.Side.EDGE, "edgehub")], ignored_by_edgehub())
    families[topics.to_cloud()] = st.one_of(families[topics.to_cloud()],
                                            another_nodes(topics.to_cloud(), "edgehub"))
    expected: Counter[str] = Counter()
    for topic, family in families.items():
        expected += rig.fuzz(family)
        assert without_unknown_deletes_tombstones(rig.dump()) == store, f"a payload on {topic} changed a store"
        assert_counters_sane(rig, totals, expected)
    # and everything still works: a new object is stored, forwarded and acknowledged; a device is answered
    key = ResourceKey(NS, "configmap", "after-fuzz")
    answer = send_down(rig, from_cloud(Op.INSERT, key, {"metadata": {"name": key.name, "namespace": NS}}, "1"))
    assert answer.body == {"outcome": "applied"}
    assert device_request(rig, "twin/get", {"event_id": "after"})["twin"]["temperature"]["actual"]["value"] == "20.5"


def native_link_states() -> st.SearchStrategy[Case]:
    """Anything on the node's hello topic that is not mosquitto's own ``1`` or ``0``: near misses and noise."""
    near = st.sampled_from([b"", b"1\n", b" 1", b"01", b"10", b"2", b"true", b"connected", b"\x01", b"\x00", b"0 "])
    noise = st.binary(max_size=300).filter(lambda b: b not in (topics.NATIVE_UP, topics.NATIVE_DOWN))
    return st.one_of(near, noise).map(lambda payload: Case(topics.link_hello(NODE), payload, {"edgehub": 1}))


def test_native_link_state(rigs: Callable[[topics.Side], Rig]) -> None:
    """EdgeHub behind mosquitto's own bridge (``--bridge native``, the default on a mosquitto node) takes the link's
    state from the raw ``1``/``0`` mosquitto publishes on the node's hello topic. Anything else there is refused and
    counted, and moves nothing: a link down stays down, a link up stays up, the outbox is untouched; mosquitto's
    own ``1`` and ``0`` still work after it."""
    rig = rigs(topics.Side.EDGE)
    rig.stores = {"edgehub": rig.workdir / "outbox.db"}
    rig.start({"edgehub": [sys.executable, "-m", "edge.edgehub", "--node", NODE, "--broker", rig.broker.url(),
                           "--outbox", str(rig.stores["edgehub"]), "--bridge", "native"]})
    store = rig.dump()
    totals = {"edgehub": rig.counters("edgehub")}
    expected: Counter[str] = Counter()
    for state, up in ((None, False), (topics.NATIVE_UP, True)):
        if state is not None:
            rig.publisher.publish(topics.link_hello(NODE), state)
            wait_until(lambda: rig.report("edgehub")["link_up"] is True, timeout=WAIT_S, what="the link up on 1",
                       alive=rig.processes["edgehub"])
        expected += rig.fuzz(native_link_states())
        assert rig.report("edgehub")["link_up"] is up, f"a refused payload moved the link from {up}"
        assert rig.dump() == store, "a payload on the hello topic changed the outbox"
        assert_counters_sane(rig, totals, expected)
    rig.publisher.publish(topics.link_hello(NODE), topics.NATIVE_DOWN)
    wait_until(lambda: rig.report("edgehub")["link_up"] is False, timeout=WAIT_S, what="the link down on 0",
               alive=rig.processes["edgehub"])


# -- the device topics, through EventBus to DeviceTwin --------------------------------------------------------

_topic_level = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"],
                                              exclude_characters="/+#"), max_size=70)
"""One level of a topic a client may publish to (mosquitto drops a client that sends control characters)."""


def a_name(text: str) -> bool:
    """A valid namespace or object name (what a fuzzed topic level must not be)."""
    return is_namespace(text) or is_object_name(text)


@st.composite
def device_topics(draw: st.DrawFn) -> Case:
    """What devices (and anything else on the edge broker) may publish under ``$hw/events/``."""
    known = topics.device(NS, DEVICE, "")
    match draw(st.integers(0, 9)):
        case 0 | 1:
            topic = known + "twin/update"
            return Case(topic, draw(bad_twin_updates), {"devicetwin": 1}, device_error(topic + "/result", (400,)))
        case 2:
            topic = known + "state/update"
            return Case(topic, draw(bad_state_updates), {"devicetwin": 1}, device_error(topic + "/result", (400,)))
        case 3:
            topic = known + "twin/get"
            return Case(topic, draw(bad_json), {"devicetwin": 1}, device_error(topic + "/result", (400,)))
        case 4 | 5:  # a device this node does not serve (another node's, or none at all)
            suffix = draw(st.sampled_from(topics.DEVICE_REQUESTS))
            topic = topics.device(draw(st.sampled_from([NS, "kube-system"])), draw(st.sampled_from(
                ["fz-unknown", "thermo-2", "thermo-1.edge-2"])), suffix)
            payload = draw(st.one_of(bad_twin_updates, bad_json, json_values.map(lambda v: json.dumps(v).encode()),
                                     st.just(json.dumps({"event_id": "e", "state": "online"}).encode())))
            return Case(topic, payload, {"devicetwin": 1}, device_error(topic + "/result", (400, 404)))
        case 6:  # names that are no namespace or no device name
            namespace, name = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
            bad = _topic_level.filter(lambda t: not a_name(t))
            topic = (f"{topics.HW_EVENTS}/device/{draw(bad) if namespace else NS}/{draw(bad) if name else DEVICE}/"
                     f"{draw(st.sampled_from(topics.DEVICE_REQUESTS))}")
            return Case(topic, draw(st.binary(max_size=200)), {"eventbus": 1})
        case 7:
            topic = topics.membership(NODE, "get")
            return Case(topic, draw(bad_json), {"devicetwin": 1}, device_error(topic + "/result", (400,)))
        case 8 if draw(st.integers(0, 3)) == 0:  # an upload too large to travel as one envelope
            size = draw(st.integers(DEFAULT_MAX_SIZE - 60, DEFAULT_MAX_SIZE + 2000))
            return Case(f"{topics.HW_EVENTS}/upload/fz", b"u" * size, {"eventbus": 1})
        case _:  # another node's membership, and device topics nobody takes requests on: nothing happens
            topic = draw(st.sampled_from([topics.membership(OTHER_NODE, "get"), known + "twin/update/delta",
                                          known + "twin/delete", f"{topics.HW_EVENTS}/device/{NS}"]))
            return Case(topic, draw(bad_twin_updates | st.binary(max_size=100)))


def test_device_topics(edge: Rig) -> None:
    """KubeEdge's device topics: wrong JSON, wrong types, unknown and foreign devices, bad names, huge and
    deep payloads. Each is answered with KubeEdge's error JSON (or counted, where there is no one to tell)."""
    rig = edge
    store = rig.dump()
    totals = {name: rig.counters(name) for name in rig.processes}
    expected = rig.fuzz(device_topics(), examples=2 * EXAMPLES)
    assert rig.dump() == store, "a device payload changed a store"
    assert_counters_sane(rig, totals, expected)
    assert expected["devicetwin"] > 0
    assert expected["eventbus"] > 0
    answer = device_request(rig, "twin/update", {"event_id": "after", "twin": {"temperature": {
        "actual": {"value": "21.5"}, "metadata": {"type": "float"}}}})
    assert answer["twin"]["temperature"]["actual"]["value"] == "21.5"
    assert rig.dump() != store  # and that one, valid, did change the twin


# -- the cloud: CloudHub, on its inbox and on every node's up topic ------------------------------------------


@pytest.fixture
def cloud(rigs: Callable[[topics.Side], Rig]) -> Rig:
    rig = rigs(topics.Side.CLOUD)
    rig.start({"cloudhub": [sys.executable, "-m", "cloud.cloudhub", "--node", "cloud", "--broker", rig.broker.url(),
                            "--keepalive-timeout-s", "3600"]})
    rig.watcher.subscribe(topics.all_links(topics.Direction.DOWN))
    return rig


@st.composite
def up_from_a_node(draw: st.DrawFn) -> Case:
    """Valid envelopes on ``edgehive/link/<node>/up`` that CloudHub must refuse."""
    up = topics.link_up(NODE)
    body = draw(msgpack_values)
    match draw(st.integers(0, 4)):
        case 0:  # speaking for another node
            envelope = Envelope(node=draw(st.sampled_from([OTHER_NODE, "cloud", "edge-10"])), src="edgehub",
                                group=draw(st.sampled_from(Group)), op=draw(st.sampled_from(Op)), body=body)
            return Case(up, envelope_bytes(envelope), {"cloudhub": 1}, reply_to(envelope.id, 403))
        case 1:  # another node's Node, NodeStatus or Lease
            key = ResourceKey(*draw(st.sampled_from([(None, "node"), (None, "nodestatus"),
                                                     ("kube-node-lease", "lease")])), OTHER_NODE)
            envelope = Envelope(node=NODE, src="edged", group=Group.RESOURCE, res=key, body=body,
                                op=draw(st.sampled_from([Op.INSERT, Op.UPDATE, Op.PATCH, Op.DELETE, Op.QUERY])))
            return Case(up, envelope_bytes(envelope), {"cloudhub": 1}, reply_to(envelope.id, 403))
        case 2:  # the hub group, not as an answer or a keepalive
            envelope = Envelope(node=NODE, src="edgehub", group=Group.HUB, body=body, op=draw(st.sampled_from(
                [Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH, Op.QUERY, Op.UPLOAD, Op.CONNECTED])))
            return Case(up, envelope_bytes(envelope), {"cloudhub": 1}, reply_to(envelope.id, 400))
        case 3:  # on a topic that names no node
            level = draw(_topic_level.filter(lambda t: not a_name(t)))
            envelope = Envelope(node=NODE, src="edgehub", group=draw(st.sampled_from(Group)),
                                op=draw(st.sampled_from(Op)), body=body)
            return Case(f"{topics.LINK}/{level}/up", envelope_bytes(envelope), {"cloudhub": 1})
        case _:  # on another node's up topic, naming this one
            envelope = Envelope(node=NODE, src="edgehub", group=draw(st.sampled_from(Group)),
                                op=draw(st.sampled_from(Op)), body=body)
            return Case(topics.link_up(OTHER_NODE), envelope_bytes(envelope), {"cloudhub": 1},
                        on_topic(topics.link_down(OTHER_NODE), reply_to(envelope.id, 403)))


@st.composite
def cloudhub_inbox(draw: st.DrawFn) -> Case:
    """From a cloud module: an object for a node without its resource key."""
    op = draw(st.sampled_from([Op.INSERT, Op.UPDATE, Op.DELETE, Op.PATCH, Op.UPLOAD, Op.CONNECTED]))
    query = Envelope(node=draw(st.sampled_from([NODE, OTHER_NODE])), src=FUZZER,
                     group=draw(st.sampled_from(Group)), op=op, body=draw(msgpack_values))
    return Case(topics.inbox(topics.Side.CLOUD, "cloudhub"), b"", {"cloudhub": 1}, request=query, code=400)


def test_cloudhub_inbox_and_up_topics(cloud: Rig) -> None:
    """CloudHub: garbage on the up topics and its inbox, nodes speaking for other nodes or naming their
    resources, and modules sending objects without keys; no node gains a session or a queue from it."""
    rig = cloud
    totals = {"cloudhub": rig.counters("cloudhub")}
    assert rig.report("cloudhub")["nodes"] == {}
    families = [
        invalid_on(topics.link_up(NODE), "cloudhub"),
        st.one_of(up_from_a_node(), invalid_on(topics.link_up(OTHER_NODE), "cloudhub"),
                  invalid_on(f"{topics.LINK}/NOT_A_NODE/up", "cloudhub")),
        st.one_of(invalid_on(topics.inbox(topics.Side.CLOUD, "cloudhub"), "cloudhub"), cloudhub_inbox()),
    ]
    expected: Counter[str] = Counter()
    for family in families:
        expected += rig.fuzz(family)
        assert_counters_sane(rig, totals, expected)
        nodes = rig.report("cloudhub")["nodes"]
        assert set(nodes) <= {NODE}, nodes  # only the node whose own link carried refused messages was heard
        assert all(link["queued"] == 0 and link["inflight"] == 0 for link in nodes.values()), nodes
    # and it still works: a keepalive starts edge-1's session; an object for it goes down its link
    keepalive = Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE, body={"outbox": 0})
    rig.publisher.publish(topics.link_up(NODE), keepalive.encode())
    wait_until(lambda: rig.report("cloudhub")["nodes"].get(NODE, {}).get("connected"), timeout=WAIT_S,
               what="edge-1's session")
    key = ResourceKey(NS, "configmap", "after-fuzz")
    obj = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT, res=key, rv="1",
                   body={"metadata": {"name": key.name, "namespace": NS}})
    rig.publisher.publish(topics.inbox(topics.Side.CLOUD, "cloudhub"), obj.encode())
    rig.await_message(lambda m: m.topic == topics.link_down(NODE) and decode(m.payload).id == obj.id,
                      "the object on edge-1's down topic")


# -- the cloud controllers: what CloudHub routes up to them ------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """Names for one controllers test (the API server lives for the whole session)."""

    namespace: str
    node: str
    other: str


def controller_cases(c: Cluster) -> dict[str, st.SearchStrategy[Case]]:
    """What a node may send that EdgeController and DeviceController must refuse, by the topic it reaches them on."""
    node, other = c.node, c.other
    wrong = msgpack_values.filter(lambda v: v is not None and not isinstance(v, dict))
    not_a_str = wrong.filter(lambda v: not isinstance(v, str))
    not_maps = (st.lists(msgpack_values.filter(lambda v: not isinstance(v, dict)), min_size=1, max_size=3)
                | wrong.filter(lambda v: not isinstance(v, list)))

    def up(module: str, res: ResourceKey | None, body: Any, code: int, op: Op = Op.UPDATE) -> Case:
        envelope = Envelope(node=node, src="edgehub", group=Group.RESOURCE, op=op, res=res, body=body)
        return Case(topics.from_edge(module), envelope_bytes(envelope), {module: 1}, reply_to(envelope.id, code))

    @st.composite
    def edge(draw: st.DrawFn) -> Case:
        body: Any
        match draw(st.integers(0, 6)):
            case 0:  # another node's status or registration
                name = draw(st.sampled_from([other, "edge-1", "kube-system"]))
                kind = draw(st.sampled_from(["nodestatus", "node"]))
                return up("edgecontroller", ResourceKey(None, kind, name), draw(msgpack_values), 403,
                          draw(st.sampled_from([Op.INSERT, Op.UPDATE])))
            case 1:  # registering under another name
                return up("edgecontroller", ResourceKey(None, "node", node), {"metadata": {"name": other}}, 403,
                          Op.INSERT)
            case 2:  # a registration of the wrong shape
                body = draw(st.fixed_dictionaries({"metadata": wrong})
                            | st.fixed_dictionaries({"metadata": st.fixed_dictionaries({"labels": wrong})})
                            | st.fixed_dictionaries({"metadata": st.fixed_dictionaries({"labels": st.dictionaries(
                                st.text(max_size=5), not_a_str, min_size=1, max_size=2)})})
                            | st.fixed_dictionaries({"status": wrong})
                            | st.fixed_dictionaries({"status": st.fixed_dictionaries({"conditions": not_maps})}))
                return up("edgecontroller", ResourceKey(None, "node", node), body, 400, Op.INSERT)
            case 3:  # its own status, of the wrong shape
                body = draw(wrong | st.fixed_dictionaries({"status": wrong | st.fixed_dictionaries(
                    {"conditions": not_maps})}))
                return up("edgecontroller", ResourceKey(None, "nodestatus", node), body, 400)
            case 4:  # a pod status of the wrong shape
                body = draw(st.fixed_dictionaries({"status": wrong})
                            | st.fixed_dictionaries({"metadata": wrong, "status": st.just({})})
                            | st.fixed_dictionaries({"metadata": st.fixed_dictionaries({"uid": not_a_str}),
                                                     "status": st.just({})})
                            | st.fixed_dictionaries({"status": st.fixed_dictionaries({"conditions": not_maps})})
                            | st.fixed_dictionaries({"status": st.fixed_dictionaries(
                                {"containerStatuses": not_maps | st.just([{"state": 5}])})}))
                return up("edgecontroller", ResourceKey(c.namespace, "podstatus", "p-other"), body, 400)
            case 5:  # the status of another node's pod
                return up("edgecontroller", ResourceKey(c.namespace, "podstatus", "p-other"),
                          {"status": {"phase": draw(st.sampled_from(["Running", "Failed"]))}}, 403)
            case _:  # asking for what it may not have
                kind = draw(st.sampled_from(["pod", "node", "device", "widget", "configmap", "secret"]))
                code = 403 if kind in ("configmap", "secret") else 400
                return up("edgecontroller", ResourceKey(c.namespace, kind, "fz-q"), None, code, Op.QUERY)

    @st.composite
    def devices(draw: st.DrawFn) -> Case:
        match draw(st.integers(0, 2)):
            case 0:
                return up("devicecontroller", ResourceKey(c.namespace, "devicestatus", draw(st.sampled_from(
                    ["fz-none", "thermo-2"]))), {"status": {"state": "online"}}, 404)
            case 1:  # another node's device
                return up("devicecontroller", ResourceKey(c.namespace, "devicestatus", "thermo-1"),
                          {"status": {"state": "online", "twins": [{"propertyName": "temperature",
                                                                    "reported": {"value": "20"}}]}}, 403)
            case _:  # its own device, a status of the wrong shape
                twin_entry = draw(st.fixed_dictionaries({"propertyName": st.just("temperature"), "reported": wrong})
                                  | st.fixed_dictionaries({"propertyName": st.just("temperature"),
                                                           "reported": st.fixed_dictionaries({"value": not_a_str})}))
                body = draw(wrong | st.fixed_dictionaries({"status": wrong})
                            | st.fixed_dictionaries({"status": st.fixed_dictionaries({"twins": wrong.filter(
                                lambda v: not isinstance(v, list))})})
                            | st.just({"status": {"twins": [twin_entry]}})
                            | st.just({"status": {"twins": [{"propertyName": "temperature",
                                                             "reported": {"value": deep_list(1015)}}]}}))
                return up("devicecontroller", ResourceKey(c.namespace, "devicestatus", "fz-mine"), body, 400)

    return {
        topics.from_edge("edgecontroller"): st.one_of(invalid_on(topics.from_edge("edgecontroller"), "edgecontroller"),
                                                      edge(), edge()),
        topics.from_edge("devicecontroller"): st.one_of(
            invalid_on(topics.from_edge("devicecontroller"), "devicecontroller"), devices(), devices()),
    }


@pytest.fixture
def controllers(rigs: Callable[[topics.Side], Rig], apiserver: ApiServer) -> Iterator[tuple[Rig, Cluster]]:
    """EdgeController and DeviceController on the real API server, with another node's pod and Device in a
    namespace of their own, and this node's Device."""
    tag = uuid.uuid4().hex[:6]
    c = Cluster(f"fz-{tag}", f"fz-{tag}-a", f"fz-{tag}-b")
    core = k8s.CoreV1Api(apiserver.client)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=c.namespace)))
    rig = rigs(topics.Side.CLOUD)
    common = ["--node", "cloud", "--broker", rig.broker.url(), "--kubeconfig", str(apiserver.kubeconfig)]
    rig.start({name: [sys.executable, "-m", f"cloud.{name}", *common] for name in ("edgecontroller",
                                                                                   "devicecontroller")})
    rig.watcher.subscribe(topics.inbox(topics.Side.CLOUD, "cloudhub"))  # where their answers go
    try:
        core.create_namespaced_pod(c.namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p-other"},
                                                 "spec": {"nodeName": c.other, "containers": [
                                                     {"name": "c", "image": "localhost/busybox:latest"}]}})
        device_objects.apply(apiserver.client, c.namespace, c.other)  # the model, and thermo-1 on the other node
        k8s.CustomObjectsApi(apiserver.client).create_namespaced_custom_object(
            device_objects.GROUP, device_objects.VERSION, c.namespace, "devices",
            device_objects.device("fz-mine", c.node, "25"))
        # DeviceController answers from its informers: wait until they hold both Devices
        for name, code in (("thermo-1", 403), ("fz-mine", 400)):
            envelope = Envelope(node=c.node, src="edgehub", group=Group.RESOURCE, op=Op.UPDATE,
                                res=ResourceKey(c.namespace, "devicestatus", name), body={"status": 5})

            def answered(e: Envelope = envelope, code: int = code) -> bool:
                rig.publisher.publish(topics.from_edge("devicecontroller"), e.encode())
                message = rig.await_message(lambda m: decode(m.payload).parent == e.id, "DeviceController's answer")
                return bool(decode(message.payload).body.get("code") == code)

            wait_until(answered, timeout=60, what=f"DeviceController to know Device {name}")
        yield rig, c
    finally:
        core.delete_namespace(c.namespace)
        with contextlib.suppress(k8s.exceptions.ApiException):
            core.delete_node(c.node)


def cluster_state(api: ApiServer, c: Cluster) -> dict[str, Any]:
    """The resourceVersions of everything a refused report could have written, and which nodes exist."""
    core, custom = k8s.CoreV1Api(api.client), k8s.CustomObjectsApi(api.client)
    devices = custom.list_namespaced_custom_object(device_objects.GROUP, device_objects.VERSION, c.namespace,
                                                   "devices")["items"]
    return {"nodes": sorted(n.metadata.name for n in core.list_node().items),
            "pod": core.read_namespaced_pod("p-other", c.namespace).metadata.resource_version,
            "devices": {d["metadata"]["name"]: d["metadata"]["resourceVersion"] for d in devices}}


def test_controllers_from_edge(controllers: tuple[Rig, Cluster], apiserver: ApiServer) -> None:
    """What CloudHub routes up from a node: reports about other nodes, their pods and their Devices, and reports
    of the wrong shape, each refused with its code, nothing written to the API server."""
    rig, c = controllers
    before = cluster_state(apiserver, c)
    totals = {name: rig.counters(name) for name in rig.processes}
    expected: Counter[str] = Counter()
    for family in controller_cases(c).values():
        expected += rig.fuzz(family, examples=EXAMPLES // 2)
        assert cluster_state(apiserver, c) == before
        assert_counters_sane(rig, totals, expected)
    # and both still work: the node registers itself, its Device's reading is written
    register = Envelope(node=c.node, src="edged", group=Group.RESOURCE, op=Op.INSERT,
                        res=ResourceKey(None, "node", c.node), body={"metadata": {"name": c.node}})
    reading = Envelope(node=c.node, src="devicetwin", group=Group.TWIN, op=Op.UPDATE,
                       res=ResourceKey(c.namespace, "devicestatus", "fz-mine"),
                       body={"status": {"state": "online", "twins": [{"propertyName": "temperature",
                                                                      "reported": {"value": "21"}}]}})
    for module, envelope in (("edgecontroller", register), ("devicecontroller", reading)):
        rig.publisher.publish(topics.from_edge(module), envelope.encode())
        rig.await_message(reply_to(envelope.id, None), f"{module}'s acknowledgement")
    assert c.node in cluster_state(apiserver, c)["nodes"]
    status = k8s.CustomObjectsApi(apiserver.client).get_namespaced_custom_object(
        device_objects.GROUP, device_objects.VERSION, c.namespace, "devices", "fz-mine")["status"]
    assert status["twins"][0]["reported"]["value"] == "21"
