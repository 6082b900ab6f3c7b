"""CloudHub's route to EdgeController's replicas, without a network: Leases and times in, each node's topic out
(cloud/replicas/routes.py), and the route agreeing with what the replicas count as theirs."""

from __future__ import annotations

import math
from itertools import count

import pytest

from cloud.cloudhub.routing import CloudRouter
from cloud.edgecontroller.shard import GROUP, EdgeShard
from cloud.replicas.leases import TAKE_AFTER_S, ReplicaLease, join_delay
from cloud.replicas.routes import ReplicaRoutes
from runtime.counters import Counters
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey

NODES = [f"edge-{i}" for i in range(60)]
DURATION = 10
STARTS = join_delay(DURATION) + TAKE_AFTER_S
"""How long after its acquireTime a replica takes its nodes."""
SHARED = topics.from_edge(GROUP)


def lease(identity: str, *, acquired: float, renewed: float) -> ReplicaLease:
    return ReplicaLease(identity, renewed, float(DURATION), acquired)


def routes_with(*leases: ReplicaLease, now: float) -> ReplicaRoutes:
    routes = ReplicaRoutes(GROUP, stale_after_s=DURATION / 2)
    routes.observe(leases, now)
    return routes


def own_topic(identity: str) -> str:
    return topics.from_edge(topics.replica_module(GROUP, identity))


def test_with_no_member_counted_everything_goes_to_the_shared_topic() -> None:
    routes = ReplicaRoutes(GROUP, stale_after_s=5)
    assert routes.topic("edge-1") == SHARED, "nothing read yet"
    assert routes.next_change(0.0) == math.inf
    routes.observe([], 100.0)
    assert routes.topic("edge-1") == SHARED, "no replica has a Lease"


def test_each_node_goes_to_the_replica_that_counts_it_as_its_own() -> None:
    now = 1000.0
    members = ("ec-a", "ec-b", "ec-c")
    routes = routes_with(*(lease(m, acquired=0.0, renewed=now - 1) for m in members), now=now)
    assert routes.members == frozenset(members)
    replicas = {m: EdgeShard(m) for m in members}
    for shard in replicas.values():
        shard.update(nodes=NODES, members=members)
    used = set()
    for node in NODES:
        topic = routes.topic(node)
        (owner,) = [m for m, shard in replicas.items() if shard.owns(node)]
        assert topic == own_topic(owner)
        used.add(owner)
    assert used == set(members)


def test_a_joiner_is_routed_to_when_it_takes_its_nodes_not_before() -> None:
    routes = routes_with(lease("ec-a", acquired=0.0, renewed=99.0), lease("ec-b", acquired=100.0, renewed=100.0),
                         now=100.0)
    assert routes.members == {"ec-a"}
    assert {routes.topic(node) for node in NODES} == {own_topic("ec-a")}
    assert routes.next_change(100.0) == pytest.approx(100.0 + DURATION / 2), "the reading goes stale first"
    routes.observe([lease("ec-a", acquired=0.0, renewed=107.0), lease("ec-b", acquired=100.0, renewed=106.7)],
                   108.0)
    assert routes.next_change(108.0) == pytest.approx(100.0 + STARTS)
    assert not routes.refresh(100.0 + STARTS - 0.01)
    assert routes.refresh(100.0 + STARTS), "counted at its start, without a new listing"
    assert {routes.topic(node) for node in NODES} == {own_topic("ec-a"), own_topic("ec-b")}


def test_a_dead_replica_is_routed_to_until_its_lease_expires() -> None:
    routes = routes_with(lease("ec-a", acquired=0.0, renewed=100.0), lease("ec-b", acquired=0.0, renewed=95.0),
                         now=100.0)
    taken = [node for node in NODES if routes.topic(node) == own_topic("ec-b")]
    assert taken
    assert routes.next_change(100.0) == 95.0 + DURATION
    assert routes.refresh(95.0 + DURATION), "expired: the others take its nodes now"
    assert {routes.topic(node) for node in taken} == {own_topic("ec-a")}


def test_a_reading_gone_stale_routes_to_the_shared_topic() -> None:
    """CloudHub cannot read the Leases: it guesses no owner; every replica hears the shared topic and the owner
    keeps what is its own."""
    routes = routes_with(lease("ec-a", acquired=0.0, renewed=100.0), now=100.0)
    assert routes.topic("edge-1") == own_topic("ec-a")
    assert routes.next_change(100.0) == 100.0 + DURATION / 2
    assert routes.refresh(100.0 + DURATION / 2 + 0.01)
    assert routes.topic("edge-1") == SHARED
    routes.observe([lease("ec-a", acquired=0.0, renewed=106.0)], 106.0)
    assert routes.topic("edge-1") == own_topic("ec-a")


def test_a_lease_whose_holder_names_no_topic_is_nobody_to_route_to() -> None:
    routes = routes_with(lease("Not A Module", acquired=0.0, renewed=100.0), lease("x" * 60, acquired=0.0,
                                                                                   renewed=100.0), now=100.0)
    assert routes.members == frozenset()
    assert routes.topic("edge-1") == SHARED


def test_a_bad_staleness_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="stale_after_s"):
        ReplicaRoutes(GROUP, stale_after_s=0)


def status_from(node: str) -> Envelope:
    return Envelope(node=node, src="edgehub", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("default", "podstatus", "p"), body={})


def test_cloudhub_sends_a_node_s_edgecontroller_messages_to_its_owner_and_the_rest_as_before() -> None:
    ids = count(1)
    router = CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=40.0, session_id=lambda: f"s{next(ids)}")
    routes = routes_with(lease("ec-a", acquired=0.0, renewed=100.0), lease("ec-b", acquired=0.0, renewed=100.0),
                         now=100.0)
    router.up_routes[GROUP] = routes
    for node in NODES[:10]:
        (send,) = router.from_node(status_from(node), topics.link_up(node), 1.0).sends
        assert send.topic == routes.topic(node) == own_topic(routes.owner(node) or "")
    query = Envelope(node="edge-1", src="edgehub", group=Group.META, op=Op.QUERY,
                     res=ResourceKey("default", "configmap", "c"))
    (send,) = router.from_node(query, topics.link_up("edge-1"), 1.0).sends
    assert send.topic == routes.topic("edge-1"), "meta goes to EdgeController too"
    twin = Envelope(node="edge-1", src="edgehub", group=Group.TWIN, op=Op.UPDATE,
                    res=ResourceKey("default", "devicestatus", "d"), body={})
    (send,) = router.from_node(twin, topics.link_up("edge-1"), 1.0).sends
    assert send.topic == topics.from_edge("devicecontroller"), "DeviceController is not sharded"
