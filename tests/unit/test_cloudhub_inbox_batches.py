"""Batches on CloudHub's inbox: a controller sends a node's changes to CloudHub in batches only when the CloudHub
holding the node's session said in its announcement that it takes them; CloudHub checks a batch whole and
queues each member as if it had come alone. Real placement, controller core (NodeSync), router and packer;
the bus records what is published."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cloud.cloudhub.routing import CloudRouter
from cloud.devicecontroller.controller import DeviceControllerSettings
from cloud.edgecontroller.controller import EdgeControllerSettings
from cloud.nodesync import BATCH_LINGER_MS, NodeSync
from cloud.packed import Packed
from cloud.placement import Change, Placement
from runtime.counters import Counters
from schemas import kinds, topics
from schemas.batch import MIN_BYTES, Batch, pack
from schemas.envelope import Envelope, Group, Op, Send, decode
from schemas.fields import BodyError
from schemas.kubeobj import EDGE_ROLE_LABEL
from schemas.link import Keepalive, SessionNews
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until

CLOUDHUB = topics.inbox(topics.Side.CLOUD, "cloudhub")


class RecordingBus:
    """What the controller publishes, and nothing else of a bus."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.published: list[tuple[str, Envelope]] = []

    def publish(self, topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        self.published.append((topic, decode(envelope.encode())))  # as CloudHub would receive it

    def envelopes(self) -> list[Envelope]:
        assert all(topic == CLOUDHUB for topic, _ in self.published)
        return [envelope for _, envelope in self.published]


class NoKube:
    def close(self) -> None:
        pass


class PodSync(NodeSync):
    module = "edgecontroller"


def controller(bus: RecordingBus, **options: Any) -> NodeSync:
    """The controller's core, not started: the test runs its reconcile loop itself; a session's resync (a listing
    of the node's store, tested in test_node_resync.py) is left out."""
    sync = PodSync(NoKube(), Placement(), (kinds.CONFIGMAP,), bus, resync_period_s=0,  # type: ignore[arg-type]
                   **options)
    sync._resync = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
    return sync


def announce(sync: NodeSync, node: str, batch_bytes: int | None, connected: bool = True) -> None:
    news = SessionNews("s1", connected, None, batch_bytes)
    sync.on_session(Envelope(node=node, src="cloudhub", group=Group.HUB, op=news.op, body=news.as_body()), "")


def edge_node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": "1", "labels": {EDGE_ROLE_LABEL: ""}}}


def pod(name: str, node: str, rv: str = "5") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": f"u-{name}"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]}}


def reconcile_burst(sync: NodeSync, *events: tuple[str, str, dict[str, Any]]) -> None:
    """The events queued at once (as a burst of API creates arrives), then the loop run until it stops."""
    for kind, what, obj in events:
        sync._sink(kind, what, obj, Packed.of(obj))
    sync._events.put(None)
    sync._reconcile_loop()


def change(node: str, name: str) -> Change:
    obj = pod(name, node)
    return Change(node, Op.INSERT, ResourceKey("ns", kinds.POD, name), "5", obj)


# -- the announcement ------------------------------------------------------------------------------------

def test_the_session_announcement_says_what_cloudhub_takes_on_its_inbox() -> None:
    for members, expected in ((100, 256 * 1024), (1, None)):
        hub = CloudRouter(Counters(), window_per_node=10, keepalive_timeout_s=40.0, session_id=lambda: "s1",
                          batch_max_members=members, batch_max_bytes=256 * 1024)
        routed = hub.from_node(Envelope(node="e1", src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                                        body=Keepalive(batch_bytes=65536).as_body()), topics.link_up("e1"), 0.0)
        (news,) = routed.announce
        assert SessionNews.parse(news.envelope.body).batch_bytes == expected


def test_the_announcements_batch_bytes_is_read_strictly() -> None:
    assert SessionNews.parse({"session": "s", "state": "connected", "batch_bytes": 4096}).batch_bytes == 4096
    assert SessionNews.parse({"session": "s", "state": "connected"}).batch_bytes is None  # the previous version
    for bad in ("4096", 0, True, 2**32):
        with pytest.raises(BodyError, match=r"body\.batch_bytes"):
            SessionNews.parse({"session": "s", "state": "connected", "batch_bytes": bad})


# -- the controller ---------------------------------------------------------------------------------------

def test_a_burst_for_a_node_whose_cloudhub_takes_batches_goes_in_one_batch_in_order() -> None:
    bus = RecordingBus()
    sync = controller(bus)
    announce(sync, "e1", 64 * 1024)
    reconcile_burst(sync, (kinds.NODE, "ADDED", edge_node("e1")),
                    *((kinds.POD, "ADDED", pod(name, "e1")) for name in ("a", "b", "c")))
    (carrier,) = bus.envelopes()
    assert (carrier.op, carrier.node, carrier.src) == (Op.BATCH, "e1", "edgecontroller")
    members = Batch.parse(carrier).members(1024 * 1024)
    assert [(m.op, m.res) for m in members] == [(Op.INSERT, ResourceKey("ns", kinds.POD, n)) for n in "abc"]
    assert bus.counters.get("downstream_insert") == 3
    assert bus.counters.get("cloudhub_batches") == 1


class SignallingBus(RecordingBus):
    """A RecordingBus that says when something is published."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def publish(self, topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        with self.cond:
            super().publish(topic, envelope, timeout=timeout)
            self.cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.published) >= count, 10), self.published


def test_a_change_after_a_quiet_spell_goes_at_once_and_what_follows_a_send_gathers_into_one_batch() -> None:
    bus = SignallingBus()
    sync = controller(bus, linger_ms=1000)
    announce(sync, "e1", 64 * 1024)
    sync._sink(kinds.NODE, "ADDED", edge_node("e1"), Packed.of(edge_node("e1")))
    loop = threading.Thread(target=sync._reconcile_loop)
    loop.start()
    try:
        first = pod("a", "e1")
        sync._sink(kinds.POD, "ADDED", first, Packed.of(first))
        bus.wait_for(1)  # nothing was sent before: it does not wait for company
        for name in ("b", "c"):  # each comes alone (taken off the queue before the next), within 1 s of that send
            obj = pod(name, "e1")
            sync._sink(kinds.POD, "ADDED", obj, Packed.of(obj))
            wait_until(sync._events.empty, timeout=10, what="the reconcile loop to take it")
        bus.wait_for(2)
    finally:
        sync._events.put(None)
        loop.join(10)
    alone, together = bus.envelopes()
    assert (alone.op, alone.res) == (Op.INSERT, ResourceKey("ns", kinds.POD, "a"))
    assert together.op == Op.BATCH
    assert [m.res for m in Batch.parse(together).members(1024 * 1024)] == [
        ResourceKey("ns", kinds.POD, n) for n in "bc"]


def test_linger_out_of_range_is_refused_by_name() -> None:
    for bad in (-1, 1001):
        with pytest.raises(ValueError, match="batch_linger_ms must be 0 to 1000"):
            controller(RecordingBus(), linger_ms=bad)


def test_a_node_whose_cloudhub_never_said_so_gets_one_message_per_object() -> None:
    bus = RecordingBus()
    sync = controller(bus)
    announce(sync, "e2", None)  # a CloudHub of the previous version
    reconcile_burst(sync, (kinds.NODE, "ADDED", edge_node("e1")), (kinds.NODE, "ADDED", edge_node("e2")),
                    *((kinds.POD, "ADDED", pod(f"{n}-{node}", node)) for node in ("e1", "e2") for n in "ab"))
    sent = bus.envelopes()
    assert all(envelope.op == Op.INSERT for envelope in sent)
    assert [(e.node, e.res.name if e.res else None) for e in sent] == [
        ("e1", "a-e1"), ("e1", "b-e1"), ("e2", "a-e2"), ("e2", "b-e2")]


def test_the_word_follows_the_latest_announcement_and_the_smaller_limit() -> None:
    bus = RecordingBus()
    sync = controller(bus, max_size=MIN_BYTES * 2)
    announce(sync, "e1", 1024 * 1024)
    sync.send([change("e1", f"p{i}") for i in range(6)])
    assert all(len(e.encode()) <= MIN_BYTES * 2 for e in bus.envelopes())  # under the controller's own limit
    assert any(e.op == Op.BATCH for e in bus.envelopes())
    bus.published.clear()
    announce(sync, "e1", None)  # the node moved to a replica of the previous version
    sync.send([change("e1", "q1"), change("e1", "q2")])
    assert [e.op for e in bus.envelopes()] == [Op.INSERT, Op.INSERT]
    bus.published.clear()
    announce(sync, "e1", MIN_BYTES - 1)  # a limit that leaves no room for a batch
    sync.send([change("e1", "r1"), change("e1", "r2")])
    assert [e.op for e in bus.envelopes()] == [Op.INSERT, Op.INSERT]


def test_batch_members_out_of_range_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="batch_members must be 1 to 1000, not 0"):
        controller(RecordingBus(), batch_members=0)
    bus = RecordingBus()
    sync = controller(bus, batch_members=1)
    announce(sync, "e1", 64 * 1024)
    sync.send([change("e1", "a"), change("e1", "b")])
    assert [e.op for e in bus.envelopes()] == [Op.INSERT, Op.INSERT]


# -- CloudHub ---------------------------------------------------------------------------------------------

def hub_for(node: str) -> CloudRouter:
    hub = CloudRouter(Counters(), window_per_node=10, keepalive_timeout_s=40.0, session_id=lambda: "s1",
                      batch_max_members=100, batch_max_bytes=256 * 1024)
    hub.from_node(Envelope(node=node, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                           body=Keepalive(batch_bytes=256 * 1024).as_body()), topics.link_up(node), 0.0)
    return hub


def test_cloudhub_queues_each_member_as_if_it_came_alone_and_sends_them_down_in_order() -> None:
    bus = RecordingBus()
    sync = controller(bus)
    announce(sync, "e1", 64 * 1024)
    sync.send([change("e1", n) for n in "abc"])
    (carrier,) = bus.envelopes()
    hub = hub_for("e1")
    routed = hub.from_module(carrier, 1.0)
    assert routed.wake
    assert routed.sends == []
    assert len(hub.queues["e1"]) == 3
    assert hub.counters.get("downstream_queued") == 3
    (due,) = hub.due_packing(1.0)
    (item,) = due.packed()
    assert [m.res for m in item.members] == [ResourceKey("ns", kinds.POD, n) for n in "abc"]


def test_a_bad_batch_from_a_controller_is_refused_whole_and_nothing_queued() -> None:
    good = Envelope(node="e1", src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                    res=ResourceKey("ns", kinds.POD, "a"), rv="5", body={})
    other_node = Envelope(node="e2", src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                          res=ResourceKey("ns", kinds.POD, "b"), rv="5", body={})
    carrier = Envelope(node="e1", src="edgecontroller", group=Group.HUB, op=Op.BATCH,
                       body={"groups": ["resource", "resource"], "members": [good.encode(), other_node.encode()]})
    hub = hub_for("e1")
    routed = hub.from_module(carrier, 1.0)
    (refusal,) = routed.sends
    assert refusal == Send(topics.inbox(topics.Side.CLOUD, "edgecontroller"), refusal.envelope)
    assert (refusal.envelope.op, refusal.envelope.parent) == (Op.ERROR, carrier.id)
    assert "body.members[1].node" in str(refusal.envelope.body)
    assert "e1" not in hub.queues or len(hub.queues["e1"]) == 0
    assert hub.counters.get("batch_refused") == 1


def test_a_batch_for_a_node_another_replica_owns_is_left_to_it() -> None:
    hub = hub_for("e1")
    hub.owned = {"e1"}
    (item,) = pack("e9", "edgecontroller", [change_envelope("e9", n) for n in "ab"], max_members=10,
                   max_bytes=64 * 1024)
    assert hub.from_module(item.envelope, 1.0).sends == []
    assert "e9" not in hub.queues
    assert hub.counters.get("not_owned") == 1


def change_envelope(node: str, name: str) -> Envelope:
    return Envelope(node=node, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                    res=ResourceKey("ns", kinds.POD, name), rv="5", body={})


@pytest.mark.parametrize("settings", [EdgeControllerSettings, DeviceControllerSettings])
def test_the_controllers_take_their_linger_as_a_setting_and_refuse_one_out_of_range(settings: Any) -> None:
    assert settings().batch_linger_ms == BATCH_LINGER_MS
    assert settings(batch_linger_ms=0).batch_linger_ms == 0
    with pytest.raises(ValueError, match="batch_linger_ms must be 0 to 1000, not 1001"):
        settings(batch_linger_ms=1001)
