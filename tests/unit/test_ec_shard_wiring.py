"""The wiring of EdgeController's replicas sharded by node, without a network: the settings that make a replica
(and refuse what cannot run), and CloudHub's thread that reads the replicas' Leases and routes each node's
messages to its owner's topic, stepped on a simulated clock against the replicas' own loops."""

from __future__ import annotations

import threading
from typing import cast

import pytest

from cloud.cloudhub.hub import CloudHubSettings
from cloud.cloudhub.shardroutes import STALE_AFTER_S, ShardRouteWatch
from cloud.edgecontroller.controller import EdgeControllerSettings
from cloud.edgecontroller.shard import GROUP, EdgeShard
from cloud.kube import Kube
from cloud.replicas.leases import TAKE_AFTER_S, LeaseKeeper, join_delay
from cloud.replicas.routes import ReplicaRoutes
from cloud.replicas.shardloop import ShardLoop
from schemas import topics
from tests.fixtures.leaseview import DictView
from tests.unit.test_shard_loop import DURATION, NODES, T0, Api, Replica

SHARED = topics.from_edge(GROUP)


def own_topic(identity: str) -> str:
    return topics.from_edge(topics.replica_module(GROUP, identity))


def test_without_a_replica_id_the_edgecontroller_settings_are_as_before() -> None:
    settings = EdgeControllerSettings()
    assert settings.replica() is None
    assert settings.node == "cloud"
    assert CloudHubSettings().edgecontroller_shards is False


def test_a_replica_id_names_the_replica_and_its_broker_client() -> None:
    settings = EdgeControllerSettings(replica_id="ec-1", lease_duration_s=6)
    assert settings.replica() == "ec-1"
    assert settings.node == "cloud-ec-1", "two replicas on the default node name would share a client id"
    assert EdgeControllerSettings(replica_id="ec-1", node="cloud-x").node == "cloud-x", "a node given is kept"


@pytest.mark.parametrize(("fields", "named"), [
    ({"replica_id": "ec-1", "leader_elect": "edgecontroller"}, "leader_elect"),
    ({"replica_id": "EC_1"}, "replica_id"),
    ({"replica_id": "e" * 60}, "replica_id"),
    ({"replica_id": "ec-1", "lease_duration_s": 1}, "lease_duration_s"),
])
def test_what_cannot_run_is_refused_naming_the_setting(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        EdgeControllerSettings(**fields)  # type: ignore[arg-type]


def test_leader_election_alone_is_still_accepted() -> None:
    assert EdgeControllerSettings(leader_elect="edgecontroller").replica() is None


def step_all(replicas: list[Replica], watch: ShardRouteWatch, clock: list[float], until: float) -> None:
    while clock[0] < until:
        for replica in replicas:
            replica.loop.step()
        watch.step()
        clock[0] += 0.05


def test_cloudhub_routes_each_node_to_the_replica_that_owns_it_and_to_the_shared_topic_when_blind() -> None:
    clock = [T0]
    api = Api()
    a, b = Replica(api, "ec-a", clock), Replica(api, "ec-b", clock)
    routes = ReplicaRoutes(GROUP, stale_after_s=3.0)
    view = DictView(api.leases, cut=lambda: api.cut, clock=lambda: clock[0])
    watch = ShardRouteWatch(view, routes, threading.Lock(), clock=lambda: clock[0])
    step_all([a, b], watch, clock, T0 + 1.0)
    assert {routes.topic(node) for node in NODES} == {SHARED}, "no replica serves yet: every replica hears it"
    step_all([a, b], watch, clock, T0 + join_delay(DURATION) + TAKE_AFTER_S + 1.0)
    assert routes.members == {"ec-a", "ec-b"}
    for node in NODES:
        (owner,) = [r for r in (a, b) if r.shard.owns(node)]
        assert routes.topic(node) == own_topic(owner.shard.identity or "")
    renewed = a.loop.keeper.valid_until()
    while a.loop.keeper.valid_until() == renewed:  # cut just after a renewal: the Leases outlast the cut
        step_all([a, b], watch, clock, clock[0] + 0.05)
    api.cut = True  # the hub cannot read the Leases (the replicas cannot renew either)
    step_all([], watch, clock, clock[0] + 3.5)
    assert {routes.topic(node) for node in NODES} == {SHARED}, "a stale reading routes to the shared topic"
    api.cut = False
    step_all([], watch, clock, clock[0] + 1.0)
    assert routes.members == {"ec-a", "ec-b"}, "back once the watch reads again (their Leases still good)"


def test_a_replica_that_leaves_is_routed_around_at_once() -> None:
    clock = [T0]
    api = Api()
    a, b = Replica(api, "ec-a", clock), Replica(api, "ec-b", clock)
    routes = ReplicaRoutes(GROUP, stale_after_s=3.0)
    view = DictView(api.leases, cut=lambda: api.cut, clock=lambda: clock[0])
    watch = ShardRouteWatch(view, routes, threading.Lock(), clock=lambda: clock[0])
    step_all([a, b], watch, clock, T0 + join_delay(DURATION) + TAKE_AFTER_S + 1.0)
    b.loop.leave()
    step_all([a], watch, clock, clock[0] + 0.1)
    assert routes.members == {"ec-a"}
    assert {routes.topic(node) for node in NODES} == {own_topic("ec-a")}
    assert a.shard.owned == frozenset(NODES), "what the hub routes to it, it now owns (its watch saw b go too)"


def test_the_default_reading_outlives_no_live_lease_and_goes_stale_after_5_s() -> None:
    """Stale 5 s after the watch's last event: against EdgeController's default 10 s Leases, a reading the hub can
    no longer renew keeps counting both live replicas (never routes one's nodes to the other) until it is stale."""
    clock = [T0]
    api = Api()
    keepers = [LeaseKeeper(cast(Kube, api), group=GROUP, identity=i, duration_s=10, view=api.view(),
                           clock=lambda: clock[0]) for i in ("ec-a", "ec-b")]
    shards = [EdgeShard(k.identity) for k in keepers]
    loops = [ShardLoop(k, s, lambda: NODES, lambda _h: None, clock=lambda: clock[0])
             for k, s in zip(keepers, shards, strict=True)]
    hub_cut = [False]  # the hub alone loses the API (the replicas keep renewing)
    view = DictView(api.leases, cut=lambda: hub_cut[0], clock=lambda: clock[0])
    routes = ReplicaRoutes(GROUP, stale_after_s=STALE_AFTER_S)
    watch = ShardRouteWatch(view, routes, threading.Lock(), clock=lambda: clock[0])
    joined = T0 + join_delay(10) + TAKE_AFTER_S
    while clock[0] < joined + 0.1:
        for loop in loops:
            loop.step()
        watch.step()
        clock[0] += 0.05
    assert routes.members == {"ec-a", "ec-b"}, "the watch reads the joiners before they take their nodes"
    hub_cut[0] = True
    cut_at = clock[0]
    while clock[0] < cut_at + 8:
        for loop in loops:
            loop.step()
        watch.step()
        assert routes.members in ({"ec-a", "ec-b"}, frozenset()), "both, or the shared topic: never one alone"
        if clock[0] - cut_at < STALE_AFTER_S - 0.1:  # the last event: just before the cut
            assert routes.members == {"ec-a", "ec-b"}
        clock[0] += 0.05
    assert all(loop.shard.owned for loop in loops), "the replicas kept their Leases all along"
    assert routes.members == frozenset(), "stale: the shared topic, heard by every replica"
    assert {routes.topic(node) for node in NODES} == {SHARED}
