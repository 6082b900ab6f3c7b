"""CloudHub packs what is due for a node into batches, and settles each member of a batch of answers: delivery
stays per object (ids, window, resends, coalescing), only the messages are fewer. No network: the router's
inputs in, the messages it would publish out."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.cloudhub.hub import CloudHubSettings
from cloud.cloudhub.queue import FIRST_RESEND_S
from cloud.cloudhub.routing import CloudRouter
from runtime.counters import Counters
from schemas import topics
from schemas.batch import Batch, Packed, pack
from schemas.envelope import Envelope, Group, Op, decode
from schemas.link import Keepalive
from schemas.resource import ResourceKey

NODE = "edge-1"
UP = topics.link_up(NODE)
DOWN = topics.link_down(NODE)


def router(window: int = 10, max_members: int = 100, max_bytes: int = 256 * 1024) -> CloudRouter:
    return CloudRouter(Counters(), window_per_node=window, keepalive_timeout_s=40.0, session_id=lambda: "s1",
                       batch_max_members=max_members, batch_max_bytes=max_bytes)


def connect(hub: CloudRouter, batch_bytes: int | None = 1024 * 1024, node: str = NODE) -> None:
    hub.from_node(Envelope(node=node, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                           body=Keepalive(batch_bytes=batch_bytes).as_body()), topics.link_up(node), 0.0)


def obj(name: str, rv: str = "1", node: str = NODE, size: int = 10) -> Envelope:
    return Envelope(node=node, src="edgecontroller", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("default", "configmap", name), rv=rv, body={"data": {"k": "x" * size}})


def queue(hub: CloudRouter, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        hub.from_module(envelope, 0.0)


def send_pass(hub: CloudRouter, now: float) -> dict[str, list[Packed]]:
    """What the hub's sender does in one pass: pack what is due, and mark every member sent."""
    out: dict[str, list[Packed]] = {}
    for due in hub.due_packing(now):
        out[due.node] = due.packed()
        for item in out[due.node]:
            for member in item.members:
                hub.sent(due.node, member, now)
    return out


def answers(*members: Envelope, node: str = NODE) -> Envelope:
    replies = [m.reply("metamanager", {"outcome": "applied"}) for m in members]
    (item,) = pack(node, "metamanager", replies, max_members=1000, max_bytes=1024 * 1024)
    return item.envelope


def test_what_is_due_for_a_node_goes_as_one_batch() -> None:
    hub = router()
    connect(hub)
    connect(hub, node="edge-2")
    objects = [obj(f"c{i}") for i in range(5)]
    queue(hub, *objects, obj("other", node="edge-2"))
    sent = send_pass(hub, 1.0)
    (item,) = sent[NODE]
    assert item.envelope.op == Op.BATCH
    assert Batch.parse(decode(item.payload)).members(1024 * 1024) == objects
    (other,) = sent["edge-2"]  # alone: as itself
    assert other.envelope.res == ResourceKey("default", "configmap", "other")
    assert hub.queues[NODE].inflight == 5
    assert send_pass(hub, 1.5) == {}  # in flight, not due again before the resend delay


def test_a_node_that_takes_no_batches_gets_one_message_per_object() -> None:
    hub = router()
    connect(hub, batch_bytes=None)  # a node of the previous version: its keepalive says nothing of batches
    objects = [obj(f"c{i}") for i in range(3)]
    queue(hub, *objects)
    items = send_pass(hub, 1.0)[NODE]
    assert [item.envelope for item in items] == objects
    assert all(item.payload == b"" for item in items)  # the bus encodes them, as before batches


@pytest.mark.parametrize("batch_bytes", [1, 1023])
def test_a_node_whose_limit_leaves_no_room_for_a_batch_gets_one_message_per_object(batch_bytes: int) -> None:
    hub = router()
    connect(hub, batch_bytes=batch_bytes)
    queue(hub, obj("a"), obj("b"))
    assert [item.envelope.op for item in send_pass(hub, 1.0)[NODE]] == [Op.UPDATE, Op.UPDATE]


def test_one_member_per_message_when_batches_are_turned_off() -> None:
    hub = router(max_members=1)
    connect(hub)
    queue(hub, obj("a"), obj("b"))
    assert [item.envelope.op for item in send_pass(hub, 1.0)[NODE]] == [Op.UPDATE, Op.UPDATE]


def test_the_smaller_of_the_two_byte_limits_applies() -> None:
    hub = router(max_bytes=64 * 1024)
    connect(hub, batch_bytes=2048)
    objects = [obj(f"c{i}", size=400) for i in range(10)]
    queue(hub, *objects)
    items = send_pass(hub, 1.0)[NODE]
    assert len(items) > 2
    assert all(len(item.payload) <= 2048 for item in items)
    assert [m for item in items for m in item.members] == objects


def test_the_window_bounds_what_is_packed() -> None:
    hub = router(window=3)
    connect(hub)
    objects = [obj(f"c{i}") for i in range(5)]
    queue(hub, *objects)
    (first,) = send_pass(hub, 1.0)[NODE]
    assert first.members == tuple(objects[:3])
    hub.from_node(answers(objects[0]), UP, 1.1)
    (second,) = send_pass(hub, 1.2)[NODE]
    assert second.members == (objects[3],)  # one slot free: one object, alone


def test_a_batch_of_answers_settles_each_member() -> None:
    hub = router()
    connect(hub)
    objects = [obj(f"c{i}") for i in range(4)]
    queue(hub, *objects)
    send_pass(hub, 1.0)
    routed = hub.from_node(answers(*objects[:3]), UP, 1.1)
    assert routed.wake
    assert len(hub.queues[NODE]) == 1
    assert hub.counters.get("downstream_acked") == 3
    assert hub.counters.get("upstream_batches") == 1


def test_resends_are_packed_again_with_the_same_ids() -> None:
    hub = router()
    connect(hub)
    objects = [obj(f"c{i}") for i in range(4)]
    queue(hub, *objects)
    (first,) = send_pass(hub, 1.0)[NODE]
    hub.from_node(answers(objects[1]), UP, 1.1)
    (again,) = send_pass(hub, 1.0 + FIRST_RESEND_S)[NODE]
    assert again.envelope.id != first.envelope.id  # a new batch ...
    assert [m.id for m in again.members] == [objects[i].id for i in (0, 2, 3)]  # ... of the same entries


def test_coalescing_is_per_object_a_late_answer_does_not_settle_the_newer_version() -> None:
    hub = router()
    connect(hub)
    old = obj("c", rv="1")
    queue(hub, old, obj("d"))
    send_pass(hub, 1.0)
    newer = obj("c", rv="2")
    queue(hub, newer)
    hub.from_node(answers(old), UP, 1.1)
    (item,) = send_pass(hub, 1.2)[NODE]
    assert item.envelope == newer  # the newer version is still owed, and goes at once


def test_a_bad_batch_of_answers_is_refused_whole_and_settles_nothing() -> None:
    hub = router()
    connect(hub)
    objects = [obj(f"c{i}") for i in range(2)]
    queue(hub, *objects)
    send_pass(hub, 1.0)
    good = objects[0].reply("metamanager", {"outcome": "applied"}).encode()
    bad = Envelope(node=NODE, src="metamanager", group=Group.HUB, op=Op.BATCH,
                   body={"groups": ["resource", "resource"], "members": [good, b"\xc1"]})
    routed = hub.from_node(bad, UP, 1.1)
    assert len(hub.queues[NODE]) == 2
    assert hub.counters.get("batch_refused") == 1
    (send,) = routed.sends
    assert send.topic == DOWN
    assert send.envelope.op == Op.ERROR
    assert send.envelope.parent == bad.id
    assert "body.members[1].payload" in send.envelope.body["reason"]


def test_a_node_refusing_a_batch_is_counted_and_its_members_stay_owed() -> None:
    hub = router()
    connect(hub)
    queue(hub, obj("a"), obj("b"))
    (item,) = send_pass(hub, 1.0)[NODE]
    refusal = item.envelope.error("metamanager", 400, "body.members[1].payload: not a msgpack value")
    hub.from_node(refusal, UP, 1.1)
    assert hub.counters.get("refused_by_node") == 1
    assert len(hub.queues[NODE]) == 2
    assert len(send_pass(hub, 1.0 + FIRST_RESEND_S)[NODE][0].members) == 2


@pytest.mark.parametrize(("fields", "message"), [
    ({"batch_max_members": 0}, "batch_max_members"),
    ({"batch_max_members": 1001}, "batch_max_members"),
    ({"batch_max_bytes": 100}, "batch_max_bytes"),
    ({"batch_linger_ms": -1}, "batch_linger_ms"),
    ({"batch_linger_ms": 1001}, "batch_linger_ms"),
])
def test_batch_settings_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CloudHubSettings(**fields)
    assert CloudHubSettings(batch_max_members=1).batch_max_members == 1
