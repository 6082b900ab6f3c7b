"""EdgeHub's routing without a network: envelopes in, sends, announcements and outbox entries out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.edgehub.outbox import Outbox
from edge.edgehub.routing import EdgeRouter
from edge.storage import DiskGuard
from runtime.counters import Counters
from runtime.queries import QUERY_MEMORY_S
from schemas import topics
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, RawSend, Send, decode
from schemas.link import Keepalive, LinkChange
from schemas.resource import ResourceKey

NODE = "edge-1"
UP = topics.link_up(NODE)
POD_STATUS = ResourceKey("default", "podstatus", "p")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", 1024 * 1024)
    yield box
    box.close()


@pytest.fixture
def router(outbox: Outbox, tmp_path: Path) -> EdgeRouter:
    return EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE)


def online(router: EdgeRouter) -> EdgeRouter:
    router.link_changed(True, "test")
    return router


def from_cloud(group: Group, op: Op, *, node: str = NODE, **fields: Any) -> Envelope:
    return Envelope(node=node, src="cloudhub", group=group, op=op, **fields)


def from_module(src: str, group: Group, op: Op, *, node: str = NODE, **fields: Any) -> Envelope:
    return Envelope(node=node, src=src, group=group, op=op, **fields)


def bridge(op: Op, body: object) -> Envelope:
    return Envelope(node=NODE, src="bridge", group=Group.HUB, op=op, body=body)


def test_downstream_goes_by_group_to_the_module_that_owns_it(router: EdgeRouter) -> None:
    for group, module in ((Group.RESOURCE, "metamanager"), (Group.META, "metamanager"), (Group.TWIN, "devicetwin"),
                          (Group.BUS, "eventbus"), (Group.USER, "eventbus")):
        envelope = from_cloud(group, Op.UPDATE, res=ResourceKey("default", "configmap", "c"), body={})
        assert router.from_cloud(envelope, 0.0).sends == [Send(topics.from_cloud(module), envelope)]


def test_another_nodes_envelope_and_the_hub_group_are_refused(router: EdgeRouter) -> None:
    assert router.from_cloud(from_cloud(Group.RESOURCE, Op.INSERT, node="edge-2"), 0.0).sends == []
    assert router.counters.get("wrong_node") == 1
    assert router.from_cloud(from_cloud(Group.HUB, Op.KEEPALIVE, body={"outbox": 1}), 0.0).sends == []
    assert router.counters.get("refused") == 1


def test_upstream_entries_go_into_the_outbox_and_leave_it_on_the_clouds_answer(router: EdgeRouter,
                                                                             outbox: Outbox) -> None:
    status = from_module("edged", Group.RESOURCE, Op.UPDATE, res=POD_STATUS, body={"status": {}})
    routed = router.from_module(status, 0.0)
    assert routed.queued
    assert routed.sends == []
    newer = from_module("edged", Group.RESOURCE, Op.UPDATE, res=POD_STATUS, body={"status": {"phase": "Running"}})
    router.from_module(newer, 0.0)
    assert [decode(e.payload) for e in outbox.after(0, 10)] == [newer]  # coalesced: the newest status only
    ack = from_cloud(Group.RESOURCE, Op.RESPONSE, parent=newer.id, body={"ok": True})
    assert router.from_cloud(ack, 1.0).acked == newer.id
    assert outbox.count() == 0
    assert router.counters.get("upstream_acked") == 1


def test_a_module_speaks_only_for_this_node(router: EdgeRouter, outbox: Outbox) -> None:
    posing = from_module("edged", Group.RESOURCE, Op.UPDATE, node="edge-2", res=POD_STATUS, body={})
    (send,) = router.from_module(posing, 0.0).sends
    assert isinstance(send, Send)
    assert send.topic == topics.inbox(topics.Side.EDGE, "edged")
    assert send.envelope.body["code"] == 400
    assert outbox.count() == 0


def test_queries_go_straight_up_and_their_answers_back_to_the_asker(router: EdgeRouter) -> None:
    online(router)
    query = from_module("metamanager", Group.META, Op.QUERY, res=ResourceKey("default", "configmap", "c"))
    assert router.from_module(query, 0.0).sends == [Send(UP, query)]
    answer = from_cloud(Group.META, Op.RESPONSE, parent=query.id, body={"metadata": {}})
    assert router.from_cloud(answer, 1.0).sends == [Send(topics.inbox(topics.Side.EDGE, "metamanager"), answer)]


def test_an_answer_after_the_query_memory_expired_goes_to_no_module(router: EdgeRouter) -> None:
    online(router)
    query = from_module("edged", Group.META, Op.QUERY, res=ResourceKey("default", "configmap", "c"))
    router.from_module(query, 0.0)
    late = from_cloud(Group.META, Op.RESPONSE, parent=query.id, body={})
    assert router.from_cloud(late, QUERY_MEMORY_S + 1).sends == []
    assert router.counters.get("late_answers") == 1


def test_a_second_acknowledgement_of_an_entry_goes_to_no_module(router: EdgeRouter, outbox: Outbox) -> None:
    """It used to go by group to MetaManager, which refused it with an error up the link."""
    online(router)
    status = from_module("edged", Group.RESOURCE, Op.UPDATE, res=POD_STATUS, body={"status": {}})
    router.from_module(status, 0.0)
    ack = from_cloud(Group.RESOURCE, Op.RESPONSE, parent=status.id, body={})
    assert router.from_cloud(ack, 1.0).acked == status.id
    assert outbox.count() == 0
    again = router.from_cloud(ack, 2.0)
    assert again.sends == []
    assert router.counters.get("late_answers") == 1
    assert router.counters.get("upstream_acked") == 1


def test_with_the_link_down_a_query_is_refused_at_once_and_an_answer_dropped(router: EdgeRouter) -> None:
    query = from_module("metamanager", Group.META, Op.QUERY, res=ResourceKey("default", "configmap", "c"))
    (send,) = router.from_module(query, 0.0).sends
    assert isinstance(send, Send)
    assert (send.topic, send.envelope.parent, send.envelope.body["code"]) == (
        topics.inbox(topics.Side.EDGE, "metamanager"), query.id, 503)
    answer = from_module("metamanager", Group.RESOURCE, Op.RESPONSE, parent="c1", body={"outcome": "applied"})
    assert router.from_module(answer, 0.0).sends == []  # the cloud sends its object again
    assert router.counters.get("dropped_offline") == 2


def test_an_entry_too_large_for_the_outbox_is_refused_to_its_sender(router: EdgeRouter, outbox: Outbox) -> None:
    small = EdgeRouter(NODE, outbox, router.guard, router.counters, max_size=200)
    big = from_module("devicetwin", Group.TWIN, Op.UPDATE, res=ResourceKey("default", "devicestatus", "d"),
                      body={"pad": "x" * 300})
    (send,) = small.from_module(big, 0.0).sends
    assert isinstance(send, Send)
    assert send.envelope.body["code"] == 413
    assert outbox.count() == 0


def test_with_the_disk_full_state_goes_up_undurably_and_events_are_refused(outbox: Outbox, tmp_path: Path) -> None:
    router = EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 2**62), Counters(), DEFAULT_MAX_SIZE)
    status = from_module("edged", Group.RESOURCE, Op.UPDATE, res=POD_STATUS, body={"status": {}})
    event = from_module("eventbus", Group.USER, Op.UPLOAD, body={"topic": "t", "payload": b"x"})
    (refused,) = router.from_module(status, 0.0).sends  # the link is down: nowhere to send it
    assert isinstance(refused, Send)
    assert refused.envelope.body["code"] == 507
    online(router)
    (raw,) = router.from_module(status, 0.0).sends
    assert isinstance(raw, RawSend)
    assert (raw.topic, decode(raw.payload)) == (UP, status)
    (send,) = router.from_module(event, 0.0).sends
    assert isinstance(send, Send)
    assert send.envelope.body["code"] == 507
    assert outbox.count() == 0
    assert (router.counters.get("sent_undurable"), router.counters.get("disk_full")) == (1, 2)


def test_the_link_coming_and_going(router: EdgeRouter) -> None:
    starting = router.starting()
    assert [(s.topic, s.envelope.op, s.envelope.body) for s in starting.announce] == [
        (topics.cloud_link(), Op.DISCONNECTED, {"reason": "starting"})]
    up = router.from_bridge(bridge(Op.CONNECTED, {"state": "up", "reason": "connected"}))
    assert up.link is True
    (hello,) = up.sends
    assert isinstance(hello, Send)
    assert (hello.topic, hello.envelope.op, hello.envelope.body) == (UP, Op.KEEPALIVE, None)
    assert [(s.envelope.op, s.envelope.body) for s in up.announce] == [(Op.CONNECTED, {"reason": "connected"})]
    again = router.from_bridge(bridge(Op.CONNECTED, {"state": "up", "reason": "connected"}))
    assert (again.link, again.sends, again.announce) == (None, [], [])
    down = router.from_bridge(bridge(Op.DISCONNECTED, {"state": "down", "reason": "bridge lost"}))
    assert down.link is False
    assert [(s.envelope.op, LinkChange.parse(s.envelope.body)) for s in down.announce] == [
        (Op.DISCONNECTED, LinkChange("bridge lost"))]


@pytest.mark.parametrize("envelope", [
    bridge(Op.CONNECTED, {"state": "down", "reason": "x"}),
    bridge(Op.CONNECTED, {"state": "up", "reason": 5}),
    bridge(Op.CONNECTED, ["up"]),
    bridge(Op.UPDATE, {"state": "up"}),
])
def test_a_bad_link_state_is_refused_and_changes_nothing(router: EdgeRouter, envelope: Envelope) -> None:
    routed = router.from_bridge(envelope)
    assert (routed.link, routed.sends, routed.announce) == (None, [], [])
    assert router.link_up is False
    assert router.counters.get("refused") == 1


def test_the_native_bridges_raw_1_and_0_flip_the_link_and_1_says_hello(router: EdgeRouter) -> None:
    """``--bridge native``: mosquitto's retained notification on the node's hello topic, read raw."""
    up = router.from_native(b"1")
    assert up.link is True
    assert router.link_up is True
    (hello,) = up.sends
    assert isinstance(hello, Send)
    assert (hello.topic, hello.envelope.op) == (UP, Op.KEEPALIVE)
    assert [(s.topic, s.envelope.op, LinkChange.parse(s.envelope.body)) for s in up.announce] == [
        (topics.cloud_link(), Op.CONNECTED, LinkChange("cloud broker connected"))]
    again = router.from_native(b"1")
    assert (again.link, again.sends, again.announce) == (None, [], [])
    down = router.from_native(b"0")
    assert (down.link, down.sends) == (False, [])
    assert [(s.envelope.op, LinkChange.parse(s.envelope.body)) for s in down.announce] == [
        (Op.DISCONNECTED, LinkChange("cloud broker unreachable"))]
    assert router.link_up is False
    assert router.counters.get("refused") == 0
    # changes only, counted for the node's metrics: the repeated 1 is not a connect
    assert (router.counters.get("link_connects"), router.counters.get("link_drops")) == (1, 1)


@pytest.mark.parametrize("payload", [b"", b"2", b"1\n", b"true", b"10",
                                     bridge(Op.CONNECTED, {"state": "up", "reason": "x"}).encode()])
def test_a_native_link_state_that_is_not_1_or_0_is_refused_counted_and_changes_nothing(
        router: EdgeRouter, payload: bytes, caplog: pytest.LogCaptureFixture) -> None:
    online(router)
    routed = router.from_native(payload)
    assert (routed.link, routed.sends, routed.announce) == (None, [], [])
    assert router.link_up is True
    assert router.counters.get("refused") == 1
    assert router.counters.get("refused_link_state") == 1
    assert "refused a native link state" in caplog.text


def test_keepalives_carry_the_outbox_size_while_the_link_is_up(router: EdgeRouter) -> None:
    assert router.keepalive() is None
    router.from_module(from_module("edged", Group.RESOURCE, Op.UPDATE, res=POD_STATUS, body={}), 0.0)
    online(router)
    send = router.keepalive()
    assert send is not None
    assert send.topic == UP
    assert Keepalive.parse(send.envelope.body) == Keepalive(1)
    assert router.report() == {"outbox_size": 1, "outbox_events": 0, "link_up": True}
