"""Events on the wire (schemas/events.py), the outbox's cap on them (edge/edgehub/outbox.py) and who may write
which (cloud/edgecontroller/events.py's refusal): bad bodies are refused with the field named."""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from cloud.edgecontroller.events import EventWriter, refusal
from cloud.kube import Kube, KubeError
from edge.edgehub.outbox import MIGRATIONS, Outbox
from edge.edgehub.routing import EdgeRouter
from edge.storage import DiskGuard, open_database
from runtime.counters import Counters
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, Send, decode
from schemas.events import KubeEvent
from schemas.fields import BodyError
from schemas.resource import ResourceKey

POD_EVENT: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.17f0a", "namespace": "shop"},
    "involvedObject": {"kind": "Pod", "name": "web", "apiVersion": "v1", "namespace": "shop", "uid": "u-1",
                       "resourceVersion": "42", "fieldPath": "spec.containers{main}"},
    "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
    "source": {"component": "kubelet", "host": "edge-1"},
    "firstTimestamp": "2026-12-03T22:00:00Z", "lastTimestamp": "2026-12-03T22:05:00Z", "count": 7,
}
NODE_EVENT: dict[str, Any] = {
    **POD_EVENT, "metadata": {"name": "edge-1.17f0b", "namespace": "default"},
    "involvedObject": {"kind": "Node", "name": "edge-1", "apiVersion": "v1", "uid": "edge-1"},
    "reason": "NodeReady", "message": "Node edge-1 status is now: NodeReady", "type": "Normal", "count": 1,
}


def with_field(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    target = out
    for part in parents:
        target = target[part]
    target[last] = value
    return out


@pytest.mark.parametrize("body", [POD_EVENT, NODE_EVENT])
def test_the_wire_format_is_the_api_servers_event(body: dict[str, Any]) -> None:
    event = KubeEvent.parse(body)
    assert event.as_body() == body
    assert KubeEvent.parse(body, event.key()) == event


@pytest.mark.parametrize(("path", "value", "field"), [
    ("type", "Error", "body.type"),
    ("count", 0, "body.count"),
    ("count", "3", "body.count"),
    ("reason", "not a reason!", "body.reason"),
    ("message", "x" * 1025, "body.message"),
    ("firstTimestamp", "yesterday", "body.firstTimestamp"),
    ("source.host", "Edge_1", "body.source.host"),
    ("involvedObject.kind", "Secret", "body.involvedObject.kind"),
    ("involvedObject.apiVersion", "apps/v1", "body.involvedObject.apiVersion"),
    ("involvedObject.namespace", None, "body.involvedObject.namespace"),
    ("metadata.namespace", "default", "body.metadata.namespace"),  # a pod's event goes in the pod's namespace
    ("metadata.name", 5, "body.metadata.name"),
])
def test_a_bad_body_is_refused_with_the_field_named(path: str, value: Any, field: str) -> None:
    with pytest.raises(BodyError) as caught:
        KubeEvent.parse(with_field(POD_EVENT, path, value))
    assert caught.value.field == field


def test_a_node_event_goes_in_default_and_the_key_must_name_the_event() -> None:
    with pytest.raises(BodyError, match=r"body\.metadata\.namespace"):
        KubeEvent.parse(with_field(NODE_EVENT, "metadata.namespace", "kube-system"))
    with pytest.raises(BodyError, match=r"body\.metadata"):
        KubeEvent.parse(POD_EVENT, ResourceKey("shop", "event", "other"))


def test_a_node_may_write_only_its_own_events() -> None:
    assert refusal(KubeEvent.parse(POD_EVENT), "edge-1") is None
    assert refusal(KubeEvent.parse(NODE_EVENT), "edge-1") is None
    assert "host edge-1" in str(refusal(KubeEvent.parse(POD_EVENT), "edge-2"))
    about_another = KubeEvent.parse(with_field(NODE_EVENT, "involvedObject.name", "edge-9"))
    assert "about its own Node, not about edge-9" in str(refusal(about_another, "edge-1"))
    assert "as kubelet" in str(refusal(KubeEvent.parse(with_field(POD_EVENT, "source.component", "scheduler")),
                                       "edge-1"))


# -- the outbox's cap -------------------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", 1024 * 1024, max_events=3)
    yield box
    box.close()


def event_envelope(name: str, kind: str = "Normal", count: int = 1, node: str = "edge-1") -> Envelope:
    body = with_field(with_field(with_field(NODE_EVENT, "metadata.name", name), "type", kind), "count", count)
    return Envelope(node=node, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("default", "event", name), body=body)


def test_repeats_coalesce_and_past_the_cap_the_oldest_normal_events_go_first(outbox: Outbox, tmp_path: Path) -> None:
    counters = Counters()
    router = EdgeRouter("edge-1", outbox, DiskGuard(tmp_path, 0), counters, DEFAULT_MAX_SIZE)
    for envelope in (event_envelope("a", "Warning"), event_envelope("b"), event_envelope("c"),
                     event_envelope("b", count=5)):  # offline: b's repeat replaces its unsent first
        assert router.from_module(envelope, 0.0).queued
    assert (outbox.count(), outbox.events, counters.get("outbox_events_dropped")) == (3, 3, 0)
    router.from_module(event_envelope("d", "Warning"), 0.0)
    router.from_module(event_envelope("e", "Warning"), 0.0)
    names = [decode(e.payload).body["metadata"]["name"] for e in outbox.after(0, 10)]
    assert names == ["a", "d", "e"]  # c and b (Normal) went before any Warning
    assert counters.get("outbox_events_dropped") == 2
    router.from_module(event_envelope("f", "Warning"), 0.0)
    assert [decode(e.payload).body["metadata"]["name"] for e in outbox.after(0, 10)] == ["d", "e", "f"]
    assert outbox.events == 3


def test_edgehub_refuses_a_bad_event_and_an_event_of_another_host(outbox: Outbox, tmp_path: Path) -> None:
    router = EdgeRouter("edge-1", outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE)
    bad = event_envelope("a")
    bad = Envelope(node=bad.node, src=bad.src, group=bad.group, op=bad.op, res=bad.res,
                   body=with_field(bad.body, "count", -1))
    (answer,) = router.from_module(bad, 0.0).sends
    assert isinstance(answer, Send)
    assert answer.envelope.op == Op.ERROR
    assert "body.count" in str(answer.envelope.body)
    foreign = event_envelope("b")
    foreign = Envelope(node=foreign.node, src=foreign.src, group=foreign.group, op=foreign.op, res=foreign.res,
                       body=with_field(foreign.body, "source.host", "edge-2"))
    (answer,) = router.from_module(foreign, 0.0).sends
    assert isinstance(answer, Send)
    assert answer.envelope.op == Op.ERROR
    assert "edge-2" in str(answer.envelope.body)
    assert outbox.count() == 0


def test_an_outbox_of_the_release_before_takes_events_after_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    open_database(path, MIGRATIONS[:1], name="old outbox").close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO outbox (msg_id, coalesce_key, is_state, payload, size, created_ms) "
                   "VALUES ('m0', NULL, 0, x'00', 1, 0)")
    box = Outbox(path, 1024 * 1024, max_events=1)
    try:
        box.add("m1", b"first", "default/event/a", "Normal")
        box.add("m2", b"second", "default/event/b", "Warning")
        assert [entry.msg_id for entry in box.after(0, 10)] == ["m0", "m2"]  # the old entry stays
        assert (box.events, box.events_dropped) == (1, 1)
    finally:
        box.close()


# -- the cloud's writes -----------------------------------------------------------------------------------


class FakeEvents:
    """The two calls EventWriter makes of Kube, on a dict (a unit test of the write's choices)."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        key = (namespace, body["metadata"]["name"])
        if key in self.stored:
            raise KubeError(409, "already exists")
        self.stored[key] = body
        return body

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("patch")
        if (namespace, name) not in self.stored:
            raise KubeError(404, "not found")
        self.stored[(namespace, name)].update(patch)
        return self.stored[(namespace, name)]


def node_event(count: int) -> tuple[KubeEvent, Envelope]:
    event = KubeEvent.parse({**NODE_EVENT, "count": count})
    return event, Envelope(node="edge-1", src="edged", group=Group.RESOURCE, op=Op.UPDATE, res=event.key(),
                           body=event.as_body())


def test_the_cloud_creates_a_new_event_patches_a_repeat_and_skips_a_count_already_written() -> None:
    kube = FakeEvents()
    writer = EventWriter(cast(Kube, kube), lambda _ns, _name: None, "edgecontroller")
    assert writer.write(*node_event(1)).op == Op.RESPONSE
    assert writer.write(*node_event(3)).op == Op.RESPONSE
    assert writer.write(*node_event(2)).body == {"ok": True, "written": False}  # a late resend
    assert kube.calls == ["create", "patch"]
    assert kube.stored[("default", "edge-1.17f0b")]["count"] == 3


def test_a_repeat_whose_event_is_gone_is_created_and_a_resent_create_patches() -> None:
    kube = FakeEvents()
    EventWriter(cast(Kube, kube), lambda _ns, _name: None, "edgecontroller").write(*node_event(4))
    assert kube.calls == ["patch", "create"]  # its first occurrence was coalesced away, or it expired
    restarted = EventWriter(cast(Kube, kube), lambda _ns, _name: None, "edgecontroller")  # remembers nothing
    kube.stored.clear()
    kube.calls.clear()
    restarted.write(*node_event(1))
    restarted2 = EventWriter(cast(Kube, kube), lambda _ns, _name: None, "edgecontroller")
    restarted2.write(*node_event(1))  # written before the ack was lost: the create meets 409
    assert kube.calls == ["create", "create", "patch"]


def test_the_cloud_refuses_an_event_about_a_pod_of_another_node() -> None:
    pods = {("shop", "web"): {"metadata": {"uid": "u-1"}, "spec": {"nodeName": "edge-2"}}}
    writer = EventWriter(cast(Kube, FakeEvents()), lambda ns, name: pods.get((ns, name)), "edgecontroller")
    event = KubeEvent.parse(POD_EVENT)
    envelope = Envelope(node="edge-1", src="edged", group=Group.RESOURCE, op=Op.UPDATE, res=event.key(),
                        body=event.as_body())
    answer = writer.write(event, envelope)
    assert (answer.op, answer.body["code"]) == (Op.ERROR, 403)
    assert "bound to edge-2, not edge-1" in answer.body["reason"]
