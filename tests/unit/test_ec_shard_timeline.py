"""Three EdgeController replicas and CloudHub's route to them on one simulated clock, without a network: real
LeaseKeepers on a dict of Leases, a replica joining, one cut off from the API and coming back. At every step no
node has two owners, and CloudHub never routes a node's messages to a replica other than the one that owns it
(cloud/edgecontroller/shard.py, cloud/replicas/routes.py: CloudHub counts members as they count themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from cloud.edgecontroller.shard import GROUP, EdgeShard
from cloud.kube import Kube, KubeError
from cloud.replicas.leases import LeaseKeeper, ReplicaLease
from cloud.replicas.routes import ReplicaRoutes
from schemas import topics
from tests.fixtures.leaseview import DictView

T0 = 1_800_000_000.0
STEP = 0.05
DURATION = 6
LIST_EVERY = 1.0
NODES = [f"edge-{i}" for i in range(40)]


@dataclass
class Api:
    """The Leases of the API server, one dict shared by every client."""

    leases: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Client:
    """One replica's view of the API: ``cut`` while it cannot reach it."""

    api: Api
    cut: bool = False

    def list_leases(self, _namespace: str, _selector: str, timeout_s: float) -> list[dict[str, Any]]:
        if self.cut:
            raise KubeError(0, "API server unreachable")
        return [dict(body, spec=dict(body["spec"])) for body in self.api.leases.values()]

    def write_lease(self, _namespace: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self.cut:
            raise KubeError(0, "API server unreachable")
        self.api.leases[body["metadata"]["name"]] = body
        return body


@dataclass
class Replica:
    keeper: LeaseKeeper
    client: Client
    shard: EdgeShard
    next_tick: float


def test_no_node_has_two_owners_and_cloudhub_routes_each_to_its_owner() -> None:
    now = [T0]
    api = Api()
    replicas: dict[str, Replica] = {}

    def start(identity: str) -> None:
        client = Client(api)
        keeper = LeaseKeeper(cast(Kube, client), group=GROUP, identity=identity, duration_s=DURATION,
                             view=DictView(api.leases, cut=lambda: client.cut), clock=lambda: now[0])
        replicas[identity] = Replica(keeper, client, EdgeShard(identity), now[0])

    routes = ReplicaRoutes(GROUP, stale_after_s=3 * LIST_EVERY)
    cloudhub = Client(api)
    next_list = T0 + 0.5
    owned_steps = misrouted = 0
    moved: set[str] = set()
    first_owner: dict[str, str] = {}
    start("ec-a")
    start("ec-b")
    for step in range(int(60 / STEP)):
        now[0] = T0 + step * STEP
        t = now[0] - T0
        if abs(t - 12.0) < STEP / 2:
            start("ec-c")  # joins
        if abs(t - 25.0) < STEP / 2:
            replicas["ec-b"].client.cut = True  # cut off from the API: serves until its Lease runs out, then nothing
        if abs(t - 42.0) < STEP / 2:
            replicas["ec-b"].client.cut = False  # back: a new membership, the join delay again
        for replica in replicas.values():
            if now[0] >= replica.next_tick:
                members = replica.keeper.tick()
                replica.next_tick = now[0] + replica.keeper.renew_interval_s
            else:
                members = replica.keeper.members()
            replica.shard.update(nodes=NODES, members=members)
        if now[0] >= next_list:
            leases = [found for body in cloudhub.list_leases("", "", 1.0) if (found := ReplicaLease.parse(body))]
            routes.observe(leases, now[0])
            next_list = now[0] + LIST_EVERY
        else:
            routes.refresh(now[0])
        for node in NODES:
            owners = [identity for identity, replica in replicas.items() if replica.shard.owns(node)]
            assert len(owners) <= 1, f"{node} owned by {owners} at t={t:.2f}"
            if not owners:
                continue
            owned_steps += 1
            first_owner.setdefault(node, owners[0])
            if owners[0] != first_owner[node]:
                moved.add(node)
            if routes.topic(node) != topics.from_edge(topics.replica_module(GROUP, owners[0])):
                misrouted += 1
    assert moved, "the scenario moved no node: it tests nothing"
    assert owned_steps > 0.8 * len(NODES) * 60 / STEP, "nodes without an owner for too long"
    assert misrouted == 0, f"{misrouted} node-steps routed to a replica that did not own the node"
