"""A batch from the cloud at the edge: EdgeHub passes it whole to MetaManager without decoding what it carries
(or splits it by module, checking every member first); MetaManager applies the members in its one transaction
and answers each, as one batch going up; CloudHub settles each member. A batch with a bad member is refused
whole, nothing of it applied. Real routers, store and packer; only the network is missing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from cloud.cloudhub.routing import CloudRouter
from edge.devicetwin.component import status_reports
from edge.edgehub.outbox import Outbox
from edge.edgehub.routing import EdgeRouter
from edge.metamanager.component import MetaManagerComponent, MetaManagerSettings
from edge.storage import DiskGuard
from runtime.bus import Bus
from runtime.counters import Counters
from schemas import topics
from schemas.batch import Batch, pack
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, Send, decode
from schemas.link import Keepalive
from schemas.resource import ResourceKey

NODE = "edge-1"
UP = topics.link_up(NODE)
TO_MM = topics.from_cloud("metamanager")


def cm(name: str, rv: str = "1") -> Envelope:
    key = ResourceKey("default", "configmap", name)
    return Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.UPDATE, res=key, rv=rv,
                    body={"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}"}, "data": {}})


def twin(name: str) -> Envelope:
    return Envelope(node=NODE, src="devicecontroller", group=Group.TWIN, op=Op.UPDATE,
                    res=ResourceKey("default", "device", name), body={"twin": {}})


def batch_of(*members: Envelope) -> Envelope:
    (item,) = pack(NODE, "cloudhub", members, max_members=100, max_bytes=64 * 1024)
    assert item.envelope.op == Op.BATCH
    return decode(item.payload)


def raw_batch(payloads: list[bytes], groups: list[str]) -> Envelope:
    return Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=Op.BATCH,
                    body={"groups": groups, "members": payloads})


@pytest.fixture
def edgehub(tmp_path: Path) -> Iterator[EdgeRouter]:
    box = Outbox(tmp_path / "outbox.db", 1024 * 1024)
    router = EdgeRouter(NODE, box, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE,
                        batch_bytes=DEFAULT_MAX_SIZE)
    router.link_changed(True, "test")
    yield router
    box.close()


class FakeBus:
    """What MetaManager's committer uses of the bus: its counters and somewhere to send."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.sent: list[Send] = []

    def send(self, sends: list[Send]) -> None:
        self.sent.extend(sends)


@pytest.fixture
def metamanager(tmp_path: Path) -> Iterator[tuple[MetaManagerComponent, FakeBus]]:
    bus = FakeBus()
    component = MetaManagerComponent(MetaManagerSettings(node=NODE, db=str(tmp_path / "meta.db"), disk_reserve_mb=0),
                                     cast(Bus, bus))
    yield component, bus
    component.store.close()


def commit(component: MetaManagerComponent) -> None:
    """Run the committer over what is queued, on this thread: it returns at the stop sentinel."""
    component._writes.put(None)  # the committer driven by hand instead of by its thread
    component._commit_loop()


def answers_up(bus: FakeBus) -> list[Envelope]:
    return [send.envelope for send in bus.sent if send.topic == topics.to_cloud()]


# -- EdgeHub ---------------------------------------------------------------------------------

def test_a_batch_all_for_metamanager_goes_there_whole_and_undecoded(edgehub: EdgeRouter) -> None:
    carried = raw_batch([b"not decoded here", b"nor here"], ["resource", "meta"])
    routed = edgehub.from_cloud(carried, 0.0)
    assert routed.sends == [Send(TO_MM, carried)]  # the same envelope: MetaManager checks the members
    assert edgehub.counters.get("batches_passed") == 1


def test_a_batch_spanning_modules_is_checked_then_split(edgehub: EdgeRouter) -> None:
    a, t, b = cm("a"), twin("t"), cm("b")
    routed = edgehub.from_cloud(batch_of(a, t, b), 0.0)
    to_mm, to_twin = routed.sends
    assert isinstance(to_mm, Send)
    assert isinstance(to_twin, Send)
    assert to_mm.topic == TO_MM
    assert Batch.parse(to_mm.envelope).members(DEFAULT_MAX_SIZE) == [a, b]
    assert (to_twin.topic, to_twin.envelope) == (topics.from_cloud("devicetwin"), t)
    assert edgehub.counters.get("batches_split") == 1


@pytest.mark.parametrize(("carried", "field"), [
    (raw_batch([cm("a").encode(), b"\xc1"], ["resource", "twin"]), "body.members[1].payload"),
    (raw_batch([cm("a").encode(), cm("b").encode()], ["resource", "twin"]), "body.members[1].group"),
    (raw_batch([], []), "body.members"),
    (raw_batch([b"x"], ["sideways"]), "body.groups[0]"),
])
def test_a_bad_batch_is_refused_whole_at_edgehub(edgehub: EdgeRouter, carried: Envelope, field: str) -> None:
    (refusal,) = edgehub.from_cloud(carried, 0.0).sends
    assert isinstance(refusal, Send)
    assert refusal.topic == UP  # nothing to any module
    assert (refusal.envelope.op, refusal.envelope.parent, refusal.envelope.group) == (Op.ERROR, carried.id, Group.HUB)
    assert field in refusal.envelope.body["reason"]
    assert edgehub.counters.get("batch_refused") == 1


def test_answers_in_a_batch_go_straight_up_while_the_link_is_up(edgehub: EdgeRouter) -> None:
    replies = replace(raw_batch([b"x"], ["resource"]), parent="cloud-batch-1")  # answers to the cloud's batch
    assert edgehub.from_module(replies, 0.0).sends == [Send(UP, replies)]
    edgehub.link_changed(False, "test")
    assert edgehub.from_module(replies, 0.0).sends == []
    assert edgehub.counters.get("dropped_offline") == 1


def report(name: str, state: str = "online") -> tuple[ResourceKey, dict[str, Any]]:
    return ResourceKey("default", "devicestatus", name), {"state": state, "twins": []}


def test_a_modules_batch_of_reports_is_queued_one_entry_per_member_as_they_came(edgehub: EdgeRouter) -> None:
    """DeviceTwin's status reports of one interval come as one batch; each is its own outbox entry (its id, its
    coalescing key), kept as the bytes it came in, and a newer report of a device replaces its entry."""
    (packed,) = status_reports(NODE, [report("d0"), report("d1"), report("d2")], DEFAULT_MAX_SIZE)
    carrier = decode(packed.payload)
    assert carrier.op == Op.BATCH
    routed = edgehub.from_module(carrier, 0.0)
    assert routed.queued
    assert routed.sends == []
    entries = edgehub.outbox.after(0, 10)
    assert [entry.msg_id for entry in entries] == [member.id for member in packed.members]
    assert [entry.payload for entry in entries] == list(Batch.parse(carrier).payloads)
    assert {entry.group for entry in entries} == {"twin"}
    assert edgehub.counters.get("module_batches") == 1
    (newer,) = status_reports(NODE, [report("d1", "offline"), report("d3")], DEFAULT_MAX_SIZE)
    assert edgehub.from_module(decode(newer.payload), 0.0).queued
    kept = [decode(entry.payload) for entry in edgehub.outbox.after(0, 10)]
    assert [(e.res.name if e.res else "", e.body["status"]["state"]) for e in kept] == [
        ("d0", "online"), ("d2", "online"), ("d1", "offline"), ("d3", "online")]


def test_a_modules_batch_with_a_member_not_for_the_outbox_or_a_bad_one_is_refused_whole(edgehub: EdgeRouter) -> None:
    status = status_reports(NODE, [report("d0")], DEFAULT_MAX_SIZE)[0].envelope
    query = Envelope(node=NODE, src="devicetwin", group=Group.TWIN, op=Op.QUERY,
                     res=ResourceKey("default", "device", "d0"))
    (mixed,) = pack(NODE, "devicetwin", [status, query], max_members=10, max_bytes=64 * 1024)
    (send,) = edgehub.from_module(decode(mixed.payload), 0.0).sends
    assert isinstance(send, Send)
    assert send.topic == topics.inbox(topics.Side.EDGE, "devicetwin")
    assert send.envelope.op == Op.ERROR
    assert "body.members[1].op" in str(send.envelope.body)
    broken = Envelope(node=NODE, src="devicetwin", group=Group.HUB, op=Op.BATCH,
                      body={"groups": ["twin", "twin"], "members": [status.encode(), b"\x93"]})
    (send,) = edgehub.from_module(broken, 0.0).sends
    assert isinstance(send, Send)
    assert "body.members[1]" in str(send.envelope.body)
    assert edgehub.outbox.count() == 0, "nothing of a refused batch is queued"
    assert edgehub.counters.get("refused") == 2


def test_an_outbox_batch_that_fails_midway_keeps_none_of_its_entries(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", 1024 * 1024)
    try:
        box.add("before", b"x" * 10, "k0")
        def failing() -> None:
            with box.batch():
                box.add("a", b"y" * 10, "k1")
                box.add("b", b"z" * 10, "k0")  # replaces "before" inside the batch
                raise RuntimeError("the disk went away")

        with pytest.raises(RuntimeError):
            failing()
        assert [entry.msg_id for entry in box.after(0, 10)] == ["before"]
        assert box.size_bytes == 10
        with box.batch():
            box.add("a", b"y" * 10, "k1")
            box.add("b", b"z" * 10, "k0")
        assert [entry.msg_id for entry in box.after(0, 10)] == ["a", "b"]
        assert box.size_bytes == 20
    finally:
        box.close()


def test_hello_and_keepalives_say_the_node_takes_batches(edgehub: EdgeRouter, tmp_path: Path) -> None:
    send = edgehub.keepalive()
    assert send is not None
    assert Keepalive.parse(send.envelope.body) == Keepalive(0, DEFAULT_MAX_SIZE)
    edgehub.link_changed(False, "test")
    (hello,) = edgehub.link_changed(True, "test").sends
    assert isinstance(hello, Send)
    assert Keepalive.parse(hello.envelope.body) == Keepalive(None, DEFAULT_MAX_SIZE)


# -- MetaManager -----------------------------------------------------------------------------

def test_metamanager_applies_a_batch_and_answers_each_member_in_one_batch(
        metamanager: tuple[MetaManagerComponent, FakeBus]) -> None:
    component, bus = metamanager
    members = [cm(f"c{i}") for i in range(3)]
    carried = batch_of(*members)
    single = cm("alone")
    assert component.on_cloud(carried, TO_MM) is None
    component.on_cloud(single, TO_MM)
    commit(component)
    assert component.store.count() == 4
    (forwards,) = [s.envelope for s in bus.sent if s.topic == topics.inbox(topics.Side.EDGE, "edged")]
    assert [f.res for f in Batch.parse(forwards).members(DEFAULT_MAX_SIZE)] == [m.res for m in [*members, single]]
    alone, batched = answers_up(bus)
    assert (alone.op, alone.parent) == (Op.RESPONSE, single.id)  # a single envelope is answered as before
    assert (batched.op, batched.parent) == (Op.BATCH, carried.id)
    replies = Batch.parse(batched).members(DEFAULT_MAX_SIZE)
    assert [r.parent for r in replies] == [m.id for m in members]
    assert {r.body["outcome"] for r in replies} == {"applied"}
    assert bus.sent[-1].envelope is batched  # the answers follow the forwards


def test_a_member_metamanager_refuses_is_answered_in_the_batch(
        metamanager: tuple[MetaManagerComponent, FakeBus]) -> None:
    component, bus = metamanager
    unknown = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.UPDATE,
                       res=ResourceKey("default", "gizmo", "g"), rv="1", body={})
    component.on_cloud(batch_of(cm("a"), unknown), TO_MM)
    commit(component)
    (batched,) = answers_up(bus)
    ok, refused = Batch.parse(batched).members(DEFAULT_MAX_SIZE)
    assert ok.op == Op.RESPONSE
    assert (refused.op, refused.parent) == (Op.ERROR, unknown.id)
    assert bus.counters.get("refused") == 1


@pytest.mark.parametrize("payloads", [
    [cm("a").encode(), b"\xc1garbage"],
    [cm("a").encode(), cm("b").with_body(None).encode()[:-3]],
    [cm("a").encode(), Envelope(node="edge-2", src="x", group=Group.RESOURCE, op=Op.UPDATE).encode()],
])
def test_a_batch_with_a_bad_member_is_refused_whole_and_nothing_applied(
        metamanager: tuple[MetaManagerComponent, FakeBus], payloads: list[bytes]) -> None:
    component, bus = metamanager
    carried = raw_batch(payloads, ["resource"] * len(payloads))
    (refusal,) = cast(list[Send], component.on_cloud(carried, TO_MM))
    assert refusal.topic == topics.to_cloud()
    assert (refusal.envelope.op, refusal.envelope.parent) == (Op.ERROR, carried.id)
    assert "body.members[1]" in refusal.envelope.body["reason"]
    commit(component)
    assert component.store.count() == 0
    assert bus.sent == []
    assert bus.counters.get("batch_refused") == 1


# -- the whole way ---------------------------------------------------------------------------

def test_from_the_cloud_queue_to_the_store_and_back_each_object_settled_once(
        edgehub: EdgeRouter, metamanager: tuple[MetaManagerComponent, FakeBus]) -> None:
    component, bus = metamanager
    cloud = CloudRouter(Counters(), window_per_node=100, keepalive_timeout_s=40.0, batch_max_members=100,
                        batch_max_bytes=256 * 1024)
    (hello,) = edgehub.link_changed(False, "t").sends + edgehub.link_changed(True, "t").sends
    assert isinstance(hello, Send)
    cloud.from_node(hello.envelope, UP, 0.0)
    objects = [cm(f"c{i}", rv="2") for i in range(20)]
    for envelope in objects:
        cloud.from_module(envelope, 0.0)
    (due,) = cloud.due_packing(1.0)
    (item,) = due.packed()
    for member in item.members:
        cloud.sent(NODE, member, 1.0)
    arrived = decode(item.payload)  # the bus of EdgeHub
    (to_mm,) = edgehub.from_cloud(arrived, 1.1).sends
    assert isinstance(to_mm, Send)
    component.on_cloud(to_mm.envelope, TO_MM)
    commit(component)
    assert component.store.count() == 20
    (answers,) = answers_up(bus)
    (up,) = edgehub.from_module(answers, 1.2).sends
    assert isinstance(up, Send)
    routed = cloud.from_node(decode(up.envelope.encode()), UP, 1.3)
    assert routed.wake
    assert len(cloud.queues[NODE]) == 0
    assert cloud.counters.get("downstream_acked") == 20
