"""Batches up the link: EdgeHub packs what its window lets go into batches, only to a cloud whose answer to the
node's keepalive said it takes them; CloudHub checks a batch whole and routes each member as if it had come
alone; delivery stays per outbox entry (slots, answers, resends, coalescing). Real routers, outbox, window and
packer; only the network and the threads are missing."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.cloudhub.routing import CloudRouter
from edge.edgehub.hub import EdgeHubSettings
from edge.edgehub.outbox import MIGRATIONS, Entry, Outbox
from edge.edgehub.routing import EdgeRouter
from edge.edgehub.window import Outgoing, Window, pack_entries
from edge.storage import DiskGuard, open_database
from runtime.counters import Counters
from schemas import topics
from schemas.batch import MIN_BYTES, Batch, pack_encoded
from schemas.envelope import DEFAULT_MAX_SIZE, Envelope, Group, Op, Send, decode
from schemas.fields import BodyError
from schemas.link import Keepalive, KeepaliveAnswer
from schemas.resource import ResourceKey

NODE = "edge-1"
UP = topics.link_up(NODE)
DOWN = topics.link_down(NODE)
GRANT_S = 40.0


def pod_status(name: str, phase: str = "Running") -> Envelope:
    return Envelope(node=NODE, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("default", "podstatus", name), body={"status": {"phase": phase}})


def device_status(name: str, value: str = "1") -> Envelope:
    return Envelope(node=NODE, src="devicetwin", group=Group.TWIN, op=Op.UPDATE,
                    res=ResourceKey("default", "devicestatus", name),
                    body={"status": {"twins": [{"propertyName": "p0", "reported": {"value": value}}]}})


def lease() -> Envelope:
    return Envelope(node=NODE, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("kube-node-lease", "lease", NODE), body={"spec": {"renewTime": "now"}})


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", 4 * 1024 * 1024)
    yield box
    box.close()


@pytest.fixture
def edge(outbox: Outbox, tmp_path: Path) -> EdgeRouter:
    return EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE,
                      batch_bytes=DEFAULT_MAX_SIZE, window=Window(200, 10.0), grant_s=GRANT_S)


def cloud(max_members: int = 100, max_bytes: int = 256 * 1024) -> CloudRouter:
    return CloudRouter(Counters(), window_per_node=100, keepalive_timeout_s=40.0, session_id=lambda: "s1",
                       batch_max_members=max_members, batch_max_bytes=max_bytes)


def hello(edge: EdgeRouter) -> Envelope:
    """The link comes up: the hello EdgeHub sends at once."""
    (send,) = edge.link_changed(True, "test").sends
    assert isinstance(send, Send)
    return send.envelope


def down(sends: list[Send]) -> list[Envelope]:
    return [send.envelope for send in sends if send.topic == DOWN]


def connected(edge: EdgeRouter, hub: CloudRouter, now: float = 0.0) -> None:
    """The link comes up, the hello reaches the cloud, the cloud's answer reaches the node."""
    for answer in down(hub.from_node(hello(edge), UP, now).sends):
        edge.from_cloud(answer, now)


def queue(edge: EdgeRouter, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        assert edge.from_module(envelope, 0.0).queued


def send_pass(edge: EdgeRouter, now: float = 0.0, max_members: int = 100) -> list[Outgoing]:
    """What hub.py's sender does in one pass: take what the window lets go, pack it, mark it in flight."""
    window = edge.window
    items = pack_entries(NODE, edge.outbox.after(window.sent_seq, window.room()), edge.upstream_batch_bytes(now),
                         max_members)
    window.sent(items, now)
    return items


# -- the signal --------------------------------------------------------------------------------------------

def test_the_cloud_answers_a_keepalive_of_a_node_that_knows_batches_with_what_it_takes(edge: EdgeRouter) -> None:
    hub = cloud(max_bytes=64 * 1024)
    ask = hello(edge)
    (answer,) = hub.from_node(ask, UP, 0.0).sends
    assert answer.topic == DOWN
    assert (answer.envelope.group, answer.envelope.op, answer.envelope.parent) == (Group.HUB, Op.RESPONSE, ask.id)
    assert KeepaliveAnswer.parse(answer.envelope.body) == KeepaliveAnswer(64 * 1024)
    assert edge.upstream_batch_bytes(0.0) is None  # nothing until the answer arrives
    edge.from_cloud(answer.envelope, 0.0)
    assert edge.upstream_batch_bytes(0.0) == 64 * 1024


def test_a_cloud_with_batches_off_says_so_and_a_node_of_the_previous_version_gets_no_answer() -> None:
    off = cloud(max_members=1)
    ask = Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE,
                   body=Keepalive(3, DEFAULT_MAX_SIZE).as_body())
    (answer,) = off.from_node(ask, UP, 0.0).sends
    assert KeepaliveAnswer.parse(answer.envelope.body) == KeepaliveAnswer(None)
    for body in (None, Keepalive(3).as_body()):  # the hello and keepalive of a node that knows no batches
        assert cloud().from_node(Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE, body=body),
                                 UP, 0.0).sends == []


def test_the_budget_up_is_the_smaller_of_the_clouds_word_and_the_nodes_own_limit(outbox: Outbox,
                                                                                  tmp_path: Path) -> None:
    edge = EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), 8192, batch_bytes=8192)
    connected(edge, cloud(max_bytes=256 * 1024))
    assert edge.upstream_batch_bytes(0.0) == 8192


def test_a_node_with_link_batches_off_neither_asks_nor_sends_batches(outbox: Outbox, tmp_path: Path) -> None:
    edge = EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE, batch_bytes=None)
    hub = cloud()
    connected(edge, hub)
    queue(edge, pod_status("a"), pod_status("b"))
    assert [item.batch_id for item in send_pass(edge)] == [None, None]


def test_only_the_answer_to_our_own_keepalive_counts(edge: EdgeRouter) -> None:
    hello(edge)
    stray = Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=Op.RESPONSE, parent="not-a-keepalive",
                     body=KeepaliveAnswer(65536).as_body())
    assert edge.from_cloud(stray, 0.0).sends == []
    assert edge.upstream_batch_bytes(0.0) is None


@pytest.mark.parametrize("body", [[1], {"batch_bytes": "65536"}, {"batch_bytes": 0}, {"batch_bytes": True}])
def test_a_bad_answer_is_refused_by_field_and_means_no_batches(edge: EdgeRouter, body: object) -> None:
    with pytest.raises(BodyError):
        KeepaliveAnswer.parse(body)
    hub = cloud()
    connected(edge, hub)
    assert edge.upstream_batch_bytes(0.0) is not None
    send = edge.keepalive()
    assert send is not None
    bad = Envelope(node=NODE, src="cloudhub", group=Group.HUB, op=Op.RESPONSE, parent=send.envelope.id, body=body)
    assert edge.from_cloud(bad, 1.0).sends == []
    assert edge.upstream_batch_bytes(1.0) is None
    assert edge.counters.get("refused") == 1


def test_the_permission_lapses_without_answers_and_with_the_link(edge: EdgeRouter) -> None:
    hub = cloud()
    connected(edge, hub, now=0.0)
    assert edge.upstream_batch_bytes(GRANT_S) is not None
    assert edge.upstream_batch_bytes(GRANT_S + 0.1) is None  # the cloud stopped answering: replaced by an older one
    send = edge.keepalive()  # a keepalive answered renews it
    assert send is not None
    for answer in down(hub.from_node(send.envelope, UP, GRANT_S + 1).sends):
        edge.from_cloud(answer, GRANT_S + 1)
    assert edge.upstream_batch_bytes(GRANT_S + 2) is not None
    edge.link_changed(False, "cut")
    assert edge.upstream_batch_bytes(GRANT_S + 2) is None
    edge.link_changed(True, "back")  # a new link: nothing until the cloud there answers the new hello
    assert edge.upstream_batch_bytes(GRANT_S + 2) is None


def test_after_the_link_comes_up_the_outbox_waits_for_the_clouds_answer_to_the_hello(outbox: Outbox,
                                                                                      tmp_path: Path) -> None:
    """What a cut queued goes up in batches: the sender holds the outbox (answer_wait) until the cloud has said
    what it takes, and the answer wakes it (queued)."""
    clock = [100.0]
    edge = EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE,
                      batch_bytes=DEFAULT_MAX_SIZE, answer_wait_s=2.0, clock=lambda: clock[0])
    assert edge.answer_wait(100.0) == 0.0  # no link, nothing to wait for
    ask = hello(edge)
    assert edge.answer_wait(100.5) == pytest.approx(1.5)
    (answer,) = down(cloud().from_node(ask, UP, 100.5).sends)
    assert edge.from_cloud(answer, 100.5).queued  # the sender wakes: the outbox may go, in batches
    assert edge.answer_wait(100.5) == 0.0
    assert edge.upstream_batch_bytes(100.5) is not None
    edge.link_changed(False, "cut")
    assert edge.answer_wait(100.5) == 0.0
    clock[0] = 200.0
    hello(edge)  # a new link, a cloud of the previous version that never answers: the wait runs out
    assert edge.answer_wait(201.0) == pytest.approx(1.0)
    assert edge.answer_wait(202.0) == 0.0
    assert edge.answer_wait(201.0) == 0.0  # and stays out for this link


def test_a_node_with_link_batches_off_never_waits_for_an_answer(outbox: Outbox, tmp_path: Path) -> None:
    edge = EdgeRouter(NODE, outbox, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE, batch_bytes=None,
                      clock=lambda: 0.0)
    hello(edge)
    assert edge.answer_wait(0.0) == 0.0


# -- packing ---------------------------------------------------------------------------------------------

def test_what_the_window_lets_go_goes_in_one_batch_member_for_member(edge: EdgeRouter) -> None:
    connected(edge, cloud())
    sent = [pod_status("a"), device_status("d"), lease()]
    queue(edge, *sent)
    (item,) = send_pass(edge)
    carrier = decode(item.payload)
    assert carrier.id == item.batch_id
    assert (carrier.group, carrier.op, carrier.node) == (Group.HUB, Op.BATCH, NODE)
    assert Batch.parse(carrier).members(DEFAULT_MAX_SIZE) == sent
    assert [entry.msg_id for entry in item.entries] == [e.id for e in sent]
    assert sorted(edge.window.inflight) == sorted(e.id for e in sent)  # each member its own slot


def test_to_a_cloud_that_never_answered_every_entry_goes_alone_as_its_stored_bytes(edge: EdgeRouter) -> None:
    hello(edge)  # an older cloud: the hello goes unanswered
    sent = [pod_status("a"), pod_status("b"), lease()]
    queue(edge, *sent)
    items = send_pass(edge)
    assert [item.batch_id for item in items] == [None, None, None]
    assert [decode(item.payload) for item in items] == sent
    assert all(decode(item.payload).op != Op.BATCH for item in items)


def test_batches_keep_to_the_member_and_byte_limits_and_the_order(edge: EdgeRouter) -> None:
    connected(edge, cloud(max_bytes=MIN_BYTES * 2))
    sent = [pod_status(f"p{i}", "x" * 300) for i in range(9)]
    queue(edge, *sent)
    items = send_pass(edge, max_members=3)
    assert all(len(item.payload) <= MIN_BYTES * 2 for item in items)
    assert all(len(item.entries) <= 3 for item in items)
    assert [entry.msg_id for item in items for entry in item.entries] == [e.id for e in sent]
    assert len(items) == 3


def test_an_entry_stored_without_its_group_or_too_large_to_share_goes_alone_in_its_place() -> None:
    entries = [Entry(1, "a", None, b"A" * 10, "resource"), Entry(2, "b", None, b"B" * 10, None),
               Entry(3, "c", None, b"C" * 10, "twin"), Entry(4, "d", None, b"D" * 10, "resource"),
               Entry(5, "e", None, b"E" * 2000, "resource"), Entry(6, "f", None, b"F" * 10, "nonsense")]
    items = pack_entries(NODE, entries, MIN_BYTES, 100)
    assert [[e.msg_id for e in item.entries] for item in items] == [["a"], ["b"], ["c", "d"], ["e"], ["f"]]
    assert [item.payload for item in items if item.batch_id is None] == [b"A" * 10, b"B" * 10, b"E" * 2000,
                                                                         b"F" * 10]


def test_pack_encoded_refuses_limits_that_leave_no_room() -> None:
    with pytest.raises(ValueError, match="max_members 0"):
        pack_encoded(NODE, "edgehub", [(Group.RESOURCE, b"x")], max_members=0, max_bytes=MIN_BYTES)
    with pytest.raises(ValueError, match="max_bytes 10"):
        pack_encoded(NODE, "edgehub", [(Group.RESOURCE, b"x")], max_members=2, max_bytes=10)


def test_the_outbox_keeps_each_entrys_group(edge: EdgeRouter) -> None:
    queue(edge, pod_status("a"), device_status("d"), pod_status("b"))
    assert [e.group for e in edge.outbox.after(0, 10)] == ["resource", "twin", "resource"]


def test_an_entry_of_the_release_before_goes_up_alone_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    older = pod_status("old")
    open_database(path, MIGRATIONS[:2], name="old outbox").close()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO outbox (msg_id, coalesce_key, is_state, payload, size, created_ms) "
                   "VALUES (?, NULL, 0, ?, 1, 0)", (older.id, older.encode()))
    box = Outbox(path, 1024 * 1024)
    try:
        edge = EdgeRouter(NODE, box, DiskGuard(tmp_path, 0), Counters(), DEFAULT_MAX_SIZE,
                          batch_bytes=DEFAULT_MAX_SIZE, grant_s=GRANT_S)
        connected(edge, cloud())
        newer = [pod_status("a"), pod_status("b")]
        queue(edge, *newer)
        items = send_pass(edge)
        assert [[e.msg_id for e in item.entries] for item in items] == [[older.id], [e.id for e in newer]]
        assert decode(items[0].payload) == older  # as it was stored: alone, its own bytes
    finally:
        box.close()


def test_the_upstream_batch_setting_is_checked_by_name() -> None:
    assert EdgeHubSettings(node="n").upstream_batch_members == 100
    with pytest.raises(ValueError, match="upstream_batch_members must be 1 to 1000, not 0"):
        EdgeHubSettings(node="n", upstream_batch_members=0)


# -- at the cloud, and back -------------------------------------------------------------------------------

def test_the_cloud_routes_each_member_as_if_it_came_alone_and_each_answer_settles_its_entry(
        edge: EdgeRouter) -> None:
    hub = cloud()
    connected(edge, hub)
    sent = [pod_status("a"), device_status("d"), lease()]
    queue(edge, *sent)
    (item,) = send_pass(edge)
    routed = hub.from_node(decode(item.payload), UP, 1.0)
    assert [(s.topic, s.envelope) for s in routed.sends] == [
        (topics.from_edge("edgecontroller"), sent[0]), (topics.from_edge("devicecontroller"), sent[1]),
        (topics.from_edge("edgecontroller"), sent[2])]
    assert hub.counters.get("upstream_batches") == 1

    answers = [hub.from_module(e.reply("edgecontroller" if e.group == Group.RESOURCE else "devicecontroller",
                                       {"ok": True}), 1.0) for e in sent]
    first = answers[0].sends[0].envelope
    assert edge.from_cloud(first, 1.0).acked == sent[0].id  # one answer settles exactly its own entry
    assert sorted(edge.window.inflight) == sorted([sent[1].id, sent[2].id])
    assert edge.outbox.count() == 2
    for routed_answer in answers[1:]:
        edge.from_cloud(routed_answer.sends[0].envelope, 1.0)
    assert edge.window.inflight == {}
    assert edge.outbox.count() == 0
    assert edge.counters.get("upstream_acked") == 3


def test_coalescing_stays_per_entry_while_its_batch_is_in_flight(edge: EdgeRouter) -> None:
    connected(edge, cloud())
    older, other = pod_status("a", "Pending"), pod_status("b")
    queue(edge, older, other)
    send_pass(edge)
    newer = pod_status("a", "Running")
    queue(edge, newer)  # replaces the older status in the outbox, not its batch-mate
    assert [e.msg_id for e in edge.outbox.after(0, 10)] == [other.id, newer.id]
    edge.from_cloud(older.reply("edgecontroller", {"ok": True}), 1.0)
    assert older.id not in edge.window.inflight  # its slot freed at once
    assert edge.counters.get("upstream_acked_replaced") == 1
    (item,) = send_pass(edge, 1.0)
    assert [e.msg_id for e in item.entries] == [newer.id]


def test_a_batch_with_a_bad_member_is_refused_whole_and_nothing_of_it_routed(edge: EdgeRouter) -> None:
    hub = cloud()
    connected(edge, hub)
    good = pod_status("a")
    (item,) = pack_encoded(NODE, "edgehub", [(Group.RESOURCE, good.encode()), (Group.RESOURCE, b"\x93junk")],
                           max_members=10, max_bytes=64 * 1024)
    routed = hub.from_node(decode(item.payload), UP, 1.0)
    (refusal,) = routed.sends  # no member reaches a controller
    assert refusal.topic == DOWN
    assert (refusal.envelope.op, refusal.envelope.parent) == (Op.ERROR, item.batch_id)
    assert "body.members[1]" in str(refusal.envelope.body)
    assert hub.counters.get("batch_refused") == 1
    assert hub.counters.get("upstream_routed") == 0


@pytest.mark.parametrize("group", [Group.HUB, Group.BUS])  # ours refuses in group hub, the bus of one without
def test_a_refused_batch_sends_its_members_again_alone_and_stops_batches(edge: EdgeRouter, group: Group) -> None:
    hub = cloud()
    connected(edge, hub)
    sent = [pod_status("a"), pod_status("b"), lease()]
    queue(edge, *sent)
    (item,) = send_pass(edge, 1.0)
    assert item.batch_id is not None
    refusal = Envelope(node=NODE, src="cloudhub", group=group, op=Op.ERROR, parent=item.batch_id,
                       body={"code": 400, "reason": "body.members[1]: bad"})
    routed = edge.from_cloud(refusal, 2.0)
    assert routed.sends == []
    assert routed.queued
    assert edge.outbox.count() == 3  # nothing settled: every member is still owed
    assert sorted(edge.window.stale(2.0)) == sorted(e.id for e in sent)  # due again at once (resends go alone)
    assert edge.upstream_batch_bytes(2.0) is None  # and no batch until the cloud says so again
    assert edge.counters.get("upstream_batch_refused") == 1
    edge.from_cloud(refusal, 2.0)  # the same refusal again: no batch of ours any more, nothing more to do
    assert edge.counters.get("upstream_batch_refused") == 1


def test_the_link_going_clears_the_window_and_its_batches(edge: EdgeRouter) -> None:
    connected(edge, cloud())
    queue(edge, pod_status("a"), pod_status("b"))
    (item,) = send_pass(edge)
    edge.link_changed(False, "cut")
    assert edge.window.inflight == {}
    assert edge.window.batches == {}
    assert edge.window.sent_seq == 0
    assert item.batch_id not in edge.window.batches


def test_the_window_forgets_batches_none_of_whose_members_is_in_flight() -> None:
    window = Window(2, 10.0)
    entries = [Entry(i, f"m{i}", None, b"x", "resource") for i in range(1, 7)]
    for i in range(0, 6, 2):
        window.sent([Outgoing(b"", (entries[i], entries[i + 1]), f"b{i}")], 0.0)
        window.acked(entries[i].msg_id)
        window.acked(entries[i + 1].msg_id)
    assert list(window.batches) == ["b4"]  # pruned when they outnumbered the window
    assert window.refused("b0") is None
    assert window.refused("b4") == ()  # ours, but nothing of it still owed
