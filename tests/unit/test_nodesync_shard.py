"""NodeSync as one of several EdgeController replicas, with the bus and the nodes' stores faked: only the nodes
it owns get objects, listings and disconnection handling; a handover resyncs what it gains, forgets what it
loses, and starts the grace period of a gained silent node (cloud/nodesync.py, cloud/replicas/shard.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cloud.edgecontroller.shard import EdgeShard
from cloud.nodesync import NodeSync
from cloud.placement import Placement
from cloud.replicas.ownership import owner
from schemas import kinds, topics
from schemas.envelope import Envelope, Group, Op
from schemas.link import SessionNews
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.unit.test_node_resync import FakeBus, NoKube, PodSync, Synced, connected, edge_node, event, make_sync, pod

NODES = [f"e{i}" for i in range(8)]
BOTH = {"ec-a", "ec-b"}
MINE = [node for node in NODES if owner(node, BOTH) == "ec-a"]
THEIRS = [node for node in NODES if owner(node, BOTH) == "ec-b"]


class AskingBus(FakeBus):
    """Also records which nodes' stores were listed, and what was listed or published for each node in order."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []
        self.order: list[tuple[str, str]] = []
        self.handled: list[str] = []
        self.srcs: set[str] = set()

    def handle(self, topic: str, _handler: Any) -> None:
        self.handled.append(topic)

    def request(self, topic: str, envelope: Envelope, timeout: float = 10.0,
                resend_after: float | None = None) -> Envelope:
        self.srcs.add(envelope.src)
        self.asked.append(envelope.node)
        self.order.append(("listed", envelope.node))
        return super().request(topic, envelope, timeout, resend_after)

    def publish(self, topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        self.order.append(("published", envelope.node))
        super().publish(topic, envelope, timeout=timeout)


class Watching:
    """Records the disconnections a NodeSync acts on, and the nodes it lets go."""

    def __init__(self) -> None:
        self.gone: list[tuple[str, str]] = []
        self.lost: list[str] = []


def web(node: str) -> ResourceKey:
    return ResourceKey("ns", kinds.POD, f"web-{node}")


def disconnected(sync: NodeSync, node: str, session: str) -> None:
    news = SessionNews(session, False)
    sync.on_session(Envelope(node=node, src="cloudhub", group=Group.HUB, op=news.op, body=news.as_body()), "")


@pytest.fixture
def replica(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[AskingBus, NodeSync, Watching]]:
    """Replica ec-a of two, every node known, connected (session s1) and running one pod."""
    caplog.set_level(logging.INFO, logger="cloud.nodesync")
    assert MINE
    assert THEIRS
    bus = AskingBus()
    sync = make_sync(bus)
    watching = Watching()
    sync.on_disconnected = lambda node, session: watching.gone.append((node, session))  # type: ignore[method-assign]
    sync.on_lost = watching.lost.append  # type: ignore[method-assign,assignment]
    shard = EdgeShard("ec-a")
    shard.update(nodes=NODES, members=BOTH)
    sync.shard = shard
    try:
        for node in NODES:
            event(sync, kinds.NODE, "ADDED", edge_node(node))
            event(sync, kinds.POD, "ADDED", pod(f"web-{node}", node, "5"))
            connected(sync, node, "s1")
        wait_until(lambda: all(bus.holds(node, web(node)) for node in MINE), timeout=10,
                   what="the owned nodes hold their pods")
        yield bus, sync, watching
    finally:
        sync.close()


def published_for(bus: FakeBus, node: str) -> list[Any]:
    return [e for e in list(bus.published) if e.node == node]


def test_only_the_nodes_it_owns_get_objects_listings_and_disconnections(
        replica: tuple[AskingBus, NodeSync, Watching]) -> None:
    bus, sync, watching = replica
    assert NODES[-1] in MINE, "the fixture waits for the last node's pod: every event before it was taken"
    wait_until(lambda: set(bus.asked) == set(MINE), timeout=10, what="its own nodes' stores listed, only those")
    assert not any(published_for(bus, node) for node in THEIRS)
    event(sync, kinds.POD, "MODIFIED", pod(f"web-{MINE[0]}", MINE[0], "6"))
    event(sync, kinds.POD, "MODIFIED", pod(f"web-{THEIRS[0]}", THEIRS[0], "6"))
    wait_until(lambda: bus.store[MINE[0]][web(MINE[0])][0] == "6", timeout=10, what="the owned node updated")
    assert not published_for(bus, THEIRS[0]), "the other replica's node gets nothing from here"
    disconnected(sync, MINE[0], "s1")
    disconnected(sync, THEIRS[0], "s1")
    assert watching.gone == [(MINE[0], "s1")], "only the owner starts the way to Unknown"
    assert sync.not_owned(THEIRS[1])
    assert not sync.not_owned(MINE[1])
    assert bus.counters.get("not_owned") == 1


def test_a_handover_resyncs_gained_live_nodes_watches_silent_ones_and_forgets_lost_ones(
        replica: tuple[AskingBus, NodeSync, Watching]) -> None:
    bus, sync, watching = replica
    silent = THEIRS[0]
    disconnected(sync, silent, "s1")  # heard by every replica; ec-b owned it
    assert watching.gone == []
    alone = sync.shard.update(members={"ec-a"})  # ec-b died: its nodes come here
    assert alone.gained == frozenset(THEIRS)
    sync.hand_over(sync.shard.moves(alone, sessions=sync._sessions, connected=sync._connected))
    live = [node for node in THEIRS if node != silent]
    wait_until(lambda: all(bus.holds(node, web(node)) for node in live), timeout=10,
               what="the gained nodes resynchronised")
    assert not bus.holds(silent, web(silent)), "a silent node is not resynced"
    wait_until(lambda: watching.gone == [(silent, "s1")], timeout=10, what="the silent node watched")
    wait_until(lambda: set(bus.asked) == set(NODES) - {silent}, timeout=10,
               what="every live node listed once it is this replica's")
    back = sync.shard.update(members=BOTH)  # ec-b is back: its nodes go again
    assert back.lost == frozenset(THEIRS)
    sync.hand_over(sync.shard.moves(back, sessions=sync._sessions, connected=sync._connected))
    wait_until(lambda: sorted(watching.lost) == sorted(THEIRS), timeout=10, what="the lost nodes let go")
    assert not any(node in sync.placement.sent for node in THEIRS)
    before = len(bus.published)
    for node in THEIRS:
        event(sync, kinds.POD, "MODIFIED", pod(f"web-{node}", node, "7"))
    event(sync, kinds.POD, "MODIFIED", pod(f"web-{MINE[0]}", MINE[0], "7"))
    wait_until(lambda: bus.store[MINE[0]][web(MINE[0])][0] == "7", timeout=10, what="the owned node updated")
    assert [e.node for e in bus.published[before:]] == [MINE[0]]


def test_a_node_gained_while_its_events_wait_may_get_its_objects_before_its_resync_and_never_a_delete() -> None:
    """The ownership changes on the membership thread; the cluster's events already queued on the reconcile thread
    then compute the gained node's changes before the handover reaches that thread. The node gets objects it may
    already hold (applied idempotently: MetaManager ignores a version it has), never a delete, since a node's
    ``sent`` is forgotten when it is lost; the resync that follows settles it from the node's own listing."""
    bus = AskingBus()
    sync = make_sync(bus)
    sync.shard = EdgeShard("ec-a")
    try:
        bus.store["e1"] = {ResourceKey("ns", kinds.POD, "old"): ("3", "u-old")}  # left by the last owner
        event(sync, kinds.NODE, "ADDED", edge_node("e1"))
        event(sync, kinds.POD, "ADDED", pod("web-e1", "e1", "5"))
        connected(sync, "e1", "s1")
        joined = sync.shard.update(nodes=["e1"], members={"ec-a"})
        moves = sync.shard.moves(joined, sessions=sync._sessions, connected=sync._connected)
        assert moves.resync == ("e1",)
        sync.hand_over(moves)
        wait_until(lambda: not bus.holds("e1", ResourceKey("ns", kinds.POD, "old")), timeout=10,
                   what="e1 resynchronised: what the cluster no longer has deleted")
        assert bus.holds("e1", web("e1"))
        assert ("listed", "e1") in bus.order
        deletes = [e.res for e in bus.published if e.op == Op.DELETE]
        assert deletes == [ResourceKey("ns", kinds.POD, "old")], "only what the listing found gone"
    finally:
        sync.close()


def test_a_replica_hears_its_own_topic_and_the_shared_one_and_names_itself_in_its_listings() -> None:
    """CloudHub routes a node's messages to its owner's topic, or to the shared one when unsure; the answers to
    a replica's listings come to the inbox its queries name (cloud/replicas/routes.py, runtime/listing.py)."""
    bus = AskingBus()
    sync = PodSync(NoKube(), Placement(), (kinds.CONFIGMAP,), bus, query_timeout_s=1.0,  # type: ignore[arg-type]
                   retry_pause_s=0.01, resync_period_s=0.0)
    sync.informers = {kind: Synced() for kind in sync.informers}  # type: ignore[misc]
    sync.shard = EdgeShard("ec-a")
    sync.shard.update(nodes=NODES, members={"ec-a"})
    sync.start()
    try:
        assert topics.from_edge("edgecontroller") in bus.handled
        assert topics.from_edge("edgecontroller-ec-a") in bus.handled
        assert "edgehive/cloud/edgecontroller-ec-a" in bus.handled
        event(sync, kinds.NODE, "ADDED", edge_node("e1"))
        connected(sync, "e1", "s1")
        wait_until(lambda: "e1" in bus.asked, timeout=10, what="e1 listed")
        assert bus.srcs == {"edgecontroller-ec-a"}
    finally:
        sync.close()


def test_the_only_edgecontroller_hears_the_shared_topic_alone_and_lists_as_itself() -> None:
    bus = AskingBus()
    sync = PodSync(NoKube(), Placement(), (kinds.CONFIGMAP,), bus, query_timeout_s=1.0,  # type: ignore[arg-type]
                   retry_pause_s=0.01, resync_period_s=0.0)
    sync.informers = {kind: Synced() for kind in sync.informers}  # type: ignore[misc]
    sync.start()
    try:
        assert [t for t in bus.handled if t.startswith("edgehive/cloud/edgecontroller")] == [
            topics.from_edge("edgecontroller")]
        event(sync, kinds.NODE, "ADDED", edge_node("e1"))
        connected(sync, "e1", "s1")
        wait_until(lambda: "e1" in bus.asked, timeout=10, what="e1 listed")
        assert bus.srcs == {"test"}, "the bus's own src, as before (the fake bus names itself test)"
    finally:
        sync.close()
