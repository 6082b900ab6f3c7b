"""Issue 17's HA fleet on real parts: a 3-member NATS cluster on loopback (each member from
``edgehive broker --nats-config``, per-node users and the link ACL), 3 CloudHub replicas sharing the fleet by
Leases, 2 EdgeController replicas sharing the nodes by Leases of their own (sharded, the CloudHub replicas routing
each node's messages to its owner, as ``edgehive up --replicas`` runs them), 2 DeviceController candidates
electing a leader, REAL_NODES whole edge nodes (bridge,
EdgeHub, MetaManager, EdgeD running pods in podman) and SIM_NODES simulated ones (edgehive.bench.simulator: the
cloud-facing half of a node over MetaManager's own logic, each logging in as its own NATS user).

One fleet for the module (it takes a minute to start on a shared 2-core machine); the scenarios run in order on
it, each under a mixed stream of ConfigMap updates and pod (and ConfigMap) creates and deletes:

1. a NATS member SIGKILLed: every node's link is back, on another member, and every store converges to exactly
   the API's state (nothing lost, nothing stale);
2. a CloudHub replica SIGKILLed: its nodes are taken by the others once its Lease expires, per the assignment
   every replica computes, and converge; started again, it takes its share back, the others having let each
   node go first: no node served by two replicas at once, over the whole run (the replicas' session records);
3. an EdgeController replica SIGKILLed: the other owns its nodes once its Lease expires, and they converge; started
   again, it takes its share back; over the whole run (from the fleet's start) no node owned by two EdgeController
   replicas at once, and at the end each node owned by exactly one, the one the assignment names (the replicas'
   ownership records: "node N owned here" / "no longer owned here");
4. a node still cannot read or write another node's topics on the cluster.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from functools import partial

import pytest
from kubernetes import client as k8s

from cloud.replicas.leases import NAMESPACE as LEASE_NAMESPACE
from cloud.replicas.ownership import owned_by, owner
from edgehive.bench.simnode import node_name
from schemas import topics
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.mqtt import TestClient
from tests.fixtures.nats import require_nats, start_nats_cluster
from tests.fixtures.podman import Podman
from tests.fixtures.processes import wait_until
from tests.integration.test_cloudhub_replicas import log_length, log_says, logged_at
from tests.integration.test_link_acl import _subscribe_refused_or_filtered
from tests.support.edge_node import remove_pods
from tests.support.ha_fleet import (
    CLOUD_PW,
    LEASE_S,
    NODE_PW,
    SIM_PW,
    HaFleet,
    MixedStream,
    create_objects,
    start_simulated,
    wait_converged,
)
from tests.support.session_records import OWNED, UNOWNED, Spell, double_service, spells

pytestmark = pytest.mark.timeout(600)  # the first test pays for the module's fleet

SIM_NODES = 200
"""The issue's 200. With the replicas' up subscriptions at QoS 1 this did not run here: a NATS member's death
left the two others creating (or refusing, after NATS's ~4 s API timeout) the replicas' replicated JetStream
consumers one at a time, so a replica re-taking 60 nodes heard none of them for minutes. At QoS 0 (--up-qos, as
every replica set-up of ours runs them on NATS) nothing is created per node."""
REAL_NODES = 2
REPLICAS = 3
CONTROLLERS = 2
STREAM_RATE = 8.0
"""API writes per second during each scenario: about what one user's kubectl apply loop makes."""
LINK_BACK_S = 10.0
"""The issue's goal for a NATS member's death; reported, and asserted with BACK_WITHIN_S."""
BACK_WITHIN_S = 40.0
"""The pass/fail deadline: test_nats_broker.py saw JetStream take over 10 s to elect new leaders on a loaded
machine; this one is shared by four sessions' test runs."""
TAKEN_WITHIN_S = 15.0
"""The issue's goal for a killed replica's nodes: Lease expiry plus resync; reported."""
CONVERGE_S = 180.0
CONNECT_S = 240.0


def split_identities(real: list[str], tag: str) -> list[str]:
    """Replica identities such that the first owns the first real node and the second the second: a killed replica
    then takes a real node with it, and the other stays put."""
    names = [f"hub{tag}-{i}" for i in range(12)]
    for ids in itertools.permutations(names, REPLICAS):
        if all(owner(node, ids) == ids[i] for i, node in enumerate(real[:2])):
            return list(ids)
    raise AssertionError("no split found")


@pytest.fixture(scope="module")
def ha_fleet(apiserver: ApiServer, session_edgehive_broker: BrokerFactory, podman: Podman,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[HaFleet]:
    require_nats()
    workdir = tmp_path_factory.mktemp("ha-fleet")
    tag = uuid.uuid4().hex[:4]
    real = [f"edge-{tag}-{i + 1}" for i in range(REAL_NODES)]
    t0 = time.monotonic()
    with ExitStack() as stack:
        (workdir / "nats").mkdir()
        nats = start_nats_cluster(workdir / "nats", {"cloud": CLOUD_PW, **dict.fromkeys(real, NODE_PW)},
                                  cheap_users={node_name(i): SIM_PW for i in range(SIM_NODES)})
        for member in nats.members:
            stack.callback(member.stop)
        namespace = f"ha-{tag}"
        core = k8s.CoreV1Api(apiserver.client)
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        sims = start_simulated(stack, nats, SIM_NODES, workdir)
        fleet = HaFleet(apiserver, nats, workdir, namespace, tag, split_identities(real, tag), {}, sims)
        stack.callback(remove_pods, podman, workdir)
        stack.callback(fleet.stop)
        for identity in fleet.ids:
            fleet.start_hub(identity)
        for component in ("edgecontroller", "devicecontroller"):
            for index in range(CONTROLLERS):
                fleet.start_controller(component, index)
        for i, name in enumerate(real):
            fleet.add_real_node(name, session_edgehive_broker, podman, first_member=i % len(nats.members))
        print(f"\nha fleet: cloud and {REAL_NODES} real nodes up {time.monotonic() - t0:.1f} s", flush=True)
        create_objects(fleet)
        print(f"ha fleet: objects made {time.monotonic() - t0:.1f} s", flush=True)
        began = time.monotonic()
        sims.command("connect 25")
        wait_until(lambda: len(sims.registered) == SIM_NODES, timeout=CONNECT_S,
                   what=f"all {SIM_NODES} simulated nodes registered")
        print(f"ha fleet: simulated nodes registered {time.monotonic() - t0:.1f} s", flush=True)
        wait_converged(fleet, CONNECT_S, "every node holding its pods and ConfigMaps")
        print(f"\nfleet of {REAL_NODES} real and {SIM_NODES} simulated nodes served "
              f"{time.monotonic() - began:.1f} s after the simulated ones began to connect")
        yield fleet
        for name in sims.names:
            core.delete_node(name)
        core.delete_namespace(namespace)


def _stream_around(fleet: HaFleet, seed: int) -> MixedStream:
    stream = MixedStream(fleet, STREAM_RATE, seed)
    stream.start()
    wait_until(lambda: stream.count() >= 15, timeout=60, what="the stream under way")
    return stream


def test_1_a_nats_member_dies_during_a_mixed_stream(ha_fleet: HaFleet) -> None:
    fleet = ha_fleet
    index = 1  # the second real node's bridge and the second replica start on it; member 1 carries the watchers
    victim = fleet.nats.members[index]
    sims = fleet.fleet
    with sims.lock:
        sim_victims = sorted(n for n, m in sims.member.items() if m == index and n in sims.connected)
    real_victims = [n for n in fleet.real if fleet.bridge_member(n) == victim.port]
    repairs = fleet.repairs()
    assert real_victims, "no real node's bridge is on the member to kill"
    since = {n: log_length(fleet.real[n][1].process) for n in real_victims}  # type: ignore[arg-type]
    stream = _stream_around(fleet, seed=1)
    try:
        victim.kill()
        killed, killed_ns = time.monotonic(), time.monotonic_ns()
        at = len(stream.errors), stream.count()

        def links_back() -> bool:
            with sims.lock:
                sims_back = all(sims.connected.get(n, 0) > killed_ns and sims.member.get(n) != index
                                for n in sim_victims)
            return sims_back and all((p := fleet.bridge_member(n, since[n])) is not None and p != victim.port
                                     for n in real_victims)

        wait_until(links_back, timeout=BACK_WITHIN_S, interval=0.1,
                   what=f"the links of {len(sim_victims)} simulated and {len(real_victims)} real nodes back")
        back_s = time.monotonic() - killed
        wait_until(lambda: stream.count() >= at[1] + 30, timeout=60, what="the stream going on after the kill")
    finally:
        stream.finish()
    wait_converged(fleet, CONVERGE_S, "every node's store exactly the API's after the member's death")
    converged_s = time.monotonic() - killed
    print(f"\nNATS member {index + 1} killed: {len(sim_victims)} simulated and {len(real_victims)} real links back "
          f"in {back_s:.1f} s (issue's goal {LINK_BACK_S:.0f} s: {'met' if back_s <= LINK_BACK_S else 'NOT met'}); "
          f"{stream.count()} writes, every store converged {converged_s:.1f} s after the kill; "
          f"{fleet.repairs() - repairs} changes repaired by the periodic resync")
    victim.launch().wait_ready()  # whole again for what follows


def _lease_expired(fleet: HaFleet, identity: str) -> bool:
    """Whether the replica's own Lease has passed its renewTime plus duration: the others may count it dead."""
    lease = k8s.CoordinationV1Api(fleet.api.client).read_namespaced_lease(f"cloudhub-{identity}", LEASE_NAMESPACE)
    renewed = lease.spec.renew_time
    return renewed is not None and renewed.timestamp() + (lease.spec.lease_duration_seconds or 0) < time.time()


def test_2_a_cloudhub_replica_dies_and_comes_back(ha_fleet: HaFleet) -> None:
    fleet = ha_fleet
    ids = fleet.ids
    victim = ids[0]  # owns the first real node
    nodes = fleet.nodes
    moving = sorted(owned_by(victim, nodes, set(ids)))
    assert next(iter(fleet.real)) in moving
    heirs = {n: owner(n, set(ids) - {victim}) or "" for n in moving}
    since = {i: log_length(p) for i, p in fleet.hubs.items()}
    repairs = fleet.repairs()
    stream = _stream_around(fleet, seed=2)
    try:
        process = fleet.hubs[victim]
        process.kill()
        killed = time.monotonic()
        fleet.killed_hubs.append((victim, process.log_path, datetime.now()))

        def taken() -> list[str]:
            return [n for n in moving if not log_says(fleet.hubs[heirs[n]], f"node {n} connected", since[heirs[n]])]

        wait_until(lambda: not taken(), timeout=LEASE_S + 60, interval=0.2,
                   what=f"the {len(moving)} nodes of {victim} taken by the others")
        taken_s = time.monotonic() - killed
        assert taken_s >= LEASE_S - 1.5, f"taken {taken_s:.1f} s after the kill, before its Lease expired"
        assert _lease_expired(fleet, victim), f"{victim}'s Lease still fresh"
        wait_until(lambda: stream.count() >= 30, timeout=60, what="the stream going on")
    finally:
        stream.finish()
    wait_converged(fleet, CONVERGE_S, f"every node's store exactly the API's with {victim} dead")
    print(f"\nCloudHub replica {victim} killed: its {len(moving)} nodes taken by the others {taken_s:.1f} s after "
          f"(issue's goal {TAKEN_WITHIN_S:.0f} s: {'met' if taken_s <= TAKEN_WITHIN_S else 'NOT met'}); converged "
          f"{time.monotonic() - killed:.1f} s after the kill; {fleet.repairs() - repairs} changes repaired by the "
          "periodic resync")
    repairs = fleet.repairs()

    since = {i: log_length(p) for i, p in fleet.hubs.items() if i != victim}
    stream = _stream_around(fleet, seed=3)
    try:
        back = fleet.start_hub(victim)
        wait_until(lambda: all(log_says(back, f"node {n} connected") for n in moving), timeout=90, interval=0.2,
                   what=f"{victim} back on its {len(moving)} nodes", alive=back)
        for node in moving:  # each heir let the node go before the returner took it
            let_go = f"node {node} no longer served here"
            heir = fleet.hubs[heirs[node]]
            wait_until(partial(log_says, heir, let_go, since[heirs[node]]), timeout=10,
                       what=f"{heirs[node]} letting {node} go")
            assert logged_at(heir, let_go, since[heirs[node]]) < logged_at(back, f"node {node} connected"), \
                f"{node} served by two replicas at once"
        wait_until(lambda: stream.count() >= 30, timeout=60, what="the stream going on")
    finally:
        stream.finish()
    wait_converged(fleet, CONVERGE_S, "every node's store exactly the API's after the return")
    print(f"{victim} back: its {len(moving)} nodes handed back; {fleet.repairs() - repairs} changes repaired by "
          "the periodic resync")

    every = [spell for identity, path, at in fleet.killed_hubs
             for spell in spells(identity, [(path, at)])]
    every += [spell for identity, p in fleet.hubs.items() for spell in spells(identity, [(p.log_path, None)])]
    overlapping = double_service(every)
    assert not overlapping, f"served by two replicas at once: {overlapping[:5]}"
    serving = {spell.node: spell.replica for spell in every if spell.end is None}
    wrong = {n: (serving.get(n), owner(n, ids)) for n in nodes if serving.get(n) != owner(n, ids)}
    assert not wrong, f"nodes not with their owner once rebalanced (serving, owner): {dict(list(wrong.items())[:8])}"


def _ownership(fleet: HaFleet) -> list[Spell]:
    """Every EdgeController replica's spells of ownership over the run, a killed process's ending at its kill."""
    every = [spell for identity, path, at in fleet.killed_edgecontrollers
             for spell in spells(identity, [(path, at)], OWNED, UNOWNED)]
    return every + [spell for identity, p in fleet.edgecontrollers.items()
                    for spell in spells(identity, [(p.log_path, None)], OWNED, UNOWNED)]


def _owners_now(fleet: HaFleet) -> dict[str, list[str]]:
    """node -> the EdgeController replicas whose records say they own it now."""
    found: dict[str, list[str]] = {}
    for spell in _ownership(fleet):
        if spell.end is None:
            found.setdefault(spell.node, []).append(spell.replica)
    return found


def test_3_an_edgecontroller_replica_dies_and_comes_back(ha_fleet: HaFleet) -> None:
    fleet = ha_fleet
    ids = [fleet.edgecontroller_id(i) for i in range(CONTROLLERS)]
    nodes = fleet.nodes
    victim, heir = ids
    wait_until(lambda: all(_owners_now(fleet).get(n) == [owner(n, ids)] for n in nodes), timeout=30,
               what="every node owned by its EdgeController replica")
    moving = sorted(owned_by(victim, nodes, set(ids)))
    assert moving, f"{victim} owns none of the fleet's nodes"
    since = log_length(fleet.edgecontrollers[heir])
    repairs = fleet.repairs()
    stream = _stream_around(fleet, seed=4)
    try:
        process = fleet.edgecontrollers[victim]
        process.kill()
        killed = time.monotonic()
        fleet.killed_edgecontrollers.append((victim, process.log_path, datetime.now()))
        survivor = fleet.edgecontrollers[heir]
        wait_until(lambda: all(log_says(survivor, f"node {n} owned here", since) for n in moving),
                   timeout=LEASE_S + 60, interval=0.2, what=f"the {len(moving)} nodes of {victim} owned by {heir}")
        taken_s = time.monotonic() - killed
        wait_until(lambda: stream.count() >= 30, timeout=60, what="the stream going on")
    finally:
        stream.finish()
    wait_converged(fleet, CONVERGE_S, f"every node's store exactly the API's with EdgeController {victim} dead")
    print(f"\nEdgeController replica {victim} killed: its {len(moving)} nodes owned by {heir} {taken_s:.1f} s after "
          f"(Lease {LEASE_S} s); converged {time.monotonic() - killed:.1f} s after the kill; "
          f"{fleet.repairs() - repairs} changes repaired by the periodic resync")

    repairs = fleet.repairs()
    stream = _stream_around(fleet, seed=5)
    try:
        back = fleet.start_controller("edgecontroller", 0)
        wait_until(lambda: all(log_says(back, f"node {n} owned here") for n in moving), timeout=90, interval=0.2,
                   what=f"{victim} back on its {len(moving)} nodes", alive=back)
        wait_until(lambda: stream.count() >= 30, timeout=60, what="the stream going on")
    finally:
        stream.finish()
    wait_converged(fleet, CONVERGE_S, "every node's store exactly the API's after the EdgeController's return")
    print(f"EdgeController {victim} back: its {len(moving)} nodes handed back; {fleet.repairs() - repairs} changes "
          "repaired by the periodic resync")

    overlapping = double_service(_ownership(fleet))
    assert not overlapping, f"owned by two EdgeController replicas at once: {overlapping[:5]}"
    now = _owners_now(fleet)
    wrong = {n: (now.get(n), owner(n, ids)) for n in nodes if now.get(n) != [owner(n, ids)]}
    assert not wrong, f"nodes not owned by exactly their EdgeController replica (owners, assigned): " \
                      f"{dict(list(wrong.items())[:8])}"


def test_4_a_node_cannot_use_another_nodes_link(ha_fleet: HaFleet) -> None:
    """In the fleet, with the nodes' own bridges on: node a, logged in as itself on another member, can neither
    read node b's link nor speak for it."""
    a, b = ha_fleet.fleet.names[:2]
    members = ha_fleet.nats.members
    with TestClient(members[0].host, members[0].port, username="cloud", password=CLOUD_PW) as cloud, \
            TestClient(members[2].host, members[2].port, username=a, password=SIM_PW) as node_a:
        for stolen in (topics.link_down(b), f"{topics.LINK}/+/down", "#", "$MQTT/sub/#"):
            _subscribe_refused_or_filtered(node_a, stolen)
        node_a.subscribe(topics.link_down(a))
        cloud.subscribe(topics.link_up(a))
        cloud.subscribe(topics.link_up(b))
        cloud.publish(topics.link_down(b), b"secret for b")
        cloud.publish(topics.link_down(a), b"for a")
        got = node_a.expect()
        while got.payload != b"for a":  # CloudHub's own traffic to a may come first
            assert got.topic == topics.link_down(a), f"node a read {got.topic}"
            got = node_a.expect()
        node_a.publish(topics.link_up(b), b"forged")
        node_a.publish(topics.link_up(a), b"fence")
        got = cloud.expect()
        while got.payload != b"fence":  # a's and b's own traffic goes on: only the forgery must not come
            assert got.payload != b"forged", "node a spoke for node b"
            got = cloud.expect()
        while not node_a.messages.empty():
            message = node_a.messages.get_nowait()
            assert message.topic == topics.link_down(a), f"node a read {message.topic}"
            assert message.payload != b"secret for b"
