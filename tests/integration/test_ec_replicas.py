"""EdgeController as replicas sharded by node, on real parts (issue 17; cloud/edgecontroller/shard.py): the local
kube-apiserver and etcd, a real broker, CloudHub routing each node's messages to its owner replica
(``--edgecontroller-shards``), two EdgeController processes with ``--replica-id``, two whole real edge nodes
(pods run in podman) and simulated ones (edgehive.bench.simulator).

Every node's pods reach it and its status and node Lease are written by its owner alone; one replica SIGKILLed:
its nodes are taken by the other once its Lease has run out (plus the resync), and pods created after reach them.
No node is acted for by two replicas at once, over the whole run: each replica logs ``node N owned here`` /
``node N no longer owned here`` right after its shard changes (cloud/replicas/shardloop.py), and every resync it
sends (``node N resynchronised``) must fall inside one of its own spells for that node. One test, one set-up."""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from cloud.replicas.ownership import owner
from edgehive.bench.scale_fleet import Fleet
from edgehive.bench.simnode import node_name
from runtime.url import BrokerUrl
from tests.fixtures.processes import ManagedProcess, wait_until
from tests.integration.test_cloudhub_replicas import log_length, log_says
from tests.integration.test_end_to_end import pod_manifest, running
from tests.support.cluster import NODE_PW, Cluster, node_names

pytestmark = pytest.mark.timeout(600)

LEASE_S = 4
SIM_NODES = 10
TAKEN_WITHIN_S = LEASE_S + 30.0
"""Pass/fail deadline for a killed replica's nodes to be owned by the other: the Lease, then a membership pass;
generous, the machine is shared. The time measured is printed."""
REACH_S = 90.0
"""A pod created to reaching its node (Running on a real one, in the store of a simulated one)."""

OWNED = re.compile(r"node (\S+) owned here")
LET_GO = re.compile(r"node (\S+) no longer owned here")
RESYNCED = re.compile(r"node (\S+) resynchronised")


@dataclass(frozen=True)
class Spell:
    replica: str
    node: str
    start: datetime
    end: datetime | None

    def covers(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at <= self.end)

    def overlaps(self, other: Spell) -> bool:
        return (self.node == other.node and self.replica != other.replica
                and (other.end is None or self.start < other.end) and (self.end is None or other.start < self.end))


def timed_lines(path: Path) -> list[tuple[datetime, str]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            found.append((datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"), line))
    return found


def spells(replica: str, path: Path, killed: datetime | None) -> list[Spell]:
    """The replica's spells of ownership from its log; a killed process's open spells end when it was killed."""
    found: list[Spell] = []
    open_: dict[str, datetime] = {}
    for at, line in timed_lines(path):
        if (gained := OWNED.search(line)) is not None:
            open_.setdefault(gained.group(1), at)
        elif (lost := LET_GO.search(line)) is not None and lost.group(1) in open_:
            found.append(Spell(replica, lost.group(1), open_.pop(lost.group(1)), at))
    return found + [Spell(replica, node, start, killed) for node, start in open_.items()]


def owners_now(replicas: dict[str, ManagedProcess]) -> dict[str, set[str]]:
    """node -> the live replicas whose log says they own it now."""
    found: dict[str, set[str]] = {}
    for identity, process in replicas.items():
        if process.returncode() is not None:
            continue
        for spell in spells(identity, process.log_path, None):
            if spell.end is None:
                found.setdefault(spell.node, set()).add(identity)
    return found


def split_identities(real: list[str]) -> list[str]:
    """Two replica identities such that the first owns real[0] and the second real[1]."""
    for a, b in itertools.permutations([f"ec{i}" for i in range(12)], 2):
        if owner(real[0], (a, b)) == a and owner(real[1], (a, b)) == b:
            return [a, b]
    raise AssertionError("no split found")


def start_replica(cluster: Cluster, identity: str) -> ManagedProcess:
    argv = [*cluster.cloud_argv("edgecontroller"), "--replica-id", identity, "--lease-duration-s", str(LEASE_S)]
    name = f"edgecontroller-{identity}"
    process = ManagedProcess(name, argv, cluster.workdir / f"{name}.log").start()
    cluster.cloud[name] = process
    return process


def start_routing_hub(cluster: Cluster) -> ManagedProcess:
    argv = [*cluster.cloud_argv("cloudhub"), "--edgecontroller-shards", "--kubeconfig", str(cluster.api.kubeconfig)]
    process = ManagedProcess("cloudhub-routing", argv, cluster.workdir / "cloudhub-routing.log").start()
    cluster.cloud["cloudhub"] = process
    return process


def reached(cluster: Cluster, sims: Fleet, pod: str, node: str) -> bool:
    """The pod is Running on its real node, or held in its simulated node's store."""
    if node in sims.names:
        return f"{cluster.namespace}/pod/{pod}" in sims.stores().get(node, {})
    return running(cluster, pod) is not None


def lease_renewed_after(cluster: Cluster, node: str, after: float) -> bool:
    lease = k8s.CoordinationV1Api(cluster.api.client).read_namespaced_lease(node, "kube-node-lease")
    renewed = lease.spec.renew_time
    return renewed is not None and renewed.timestamp() > after


@pytest.mark.parametrize("routed", [True, False], ids=["routed", "shared-topic"])
def test_two_replicas_share_the_nodes_and_one_killed_hands_its_nodes_to_the_other(cluster_factory: Any,
                                                                                  routed: bool) -> None:
    """``routed``: CloudHub sends each node's messages to its owner's topic; else (a CloudHub that knows nothing
    of shards, as in a mixed-version fleet) everything goes to the shared topic, which both replicas hear, each
    keeping only its own nodes: the same outcome, at a decode per replica per message."""
    real = node_names(2)
    simulated = [node_name(i) for i in range(SIM_NODES)]
    cluster: Cluster = cluster_factory(real, spare=simulated)
    nodes = [*real, *simulated]
    a, b = ids = split_identities(real)
    cluster.cloud.pop("edgecontroller").stop()  # the lone EdgeController makes way for the replicas
    hub = cluster.cloud["cloudhub"]
    if routed:
        cluster.cloud.pop("cloudhub").stop()  # and CloudHub for one that routes to them
        hub = start_routing_hub(cluster)
    replicas = {identity: start_replica(cluster, identity) for identity in ids}
    kills: dict[str, datetime] = {}
    with ExitStack() as stack:
        broker = cluster.cloud_broker
        sims = Fleet(stack, BrokerUrl(broker.host, broker.port), SIM_NODES, cluster.workdir, password=NODE_PW)
        stack.callback(_delete_nodes, cluster, simulated)
        sims.command("connect 10")
        wait_until(lambda: len(sims.registered) == SIM_NODES, timeout=120, what=f"{SIM_NODES} simulated nodes "
                   "registered through the replicas")

        # 1. Each node owned by the replica the assignment names, by that one alone, and routed to it.
        expected = {node: owner(node, ids) for node in nodes}
        # (only this test's nodes: the API server lives for the session, and the replicas share every edge Node)
        wait_until(lambda: {n: sorted(owners_now(replicas).get(n, ())) for n in nodes}
                   == {n: [o] for n, o in expected.items()}, timeout=60, what="each node owned by one replica",
                   interval=0.5)
        if routed:
            wait_until(partial(log_says, hub, f"routing edgecontroller's messages over replicas {sorted(ids)}"),
                       timeout=30, what="CloudHub routing to both replicas")
        for node in nodes:
            wait_until(partial(cluster.node_ready, node), timeout=60, what=f"{node} Ready, its status written",
                       interval=0.5)
        for i, node in enumerate(nodes):
            cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest(f"before-{i}", node, "sleep 3600"))
        for i, node in enumerate(nodes):
            wait_until(partial(reached, cluster, sims, f"before-{i}", node), timeout=REACH_S,
                       what=f"before-{i} reaching {node}", interval=1.0)
        since = time.time()
        for node in nodes:  # the owner renews each node's Lease with its status
            wait_until(partial(lease_renewed_after, cluster, node, since), timeout=60,
                       what=f"{node}'s Lease renewed", interval=0.5)

        # 2. a SIGKILLed: its nodes are b's once its Lease has run out, and new pods reach them.
        lost = sorted(node for node, held in expected.items() if held == a)
        assert real[0] in lost
        b_log = log_length(replicas[b])
        replicas[a].kill()
        killed = time.monotonic()
        kills[a] = datetime.now()
        killed_wall = time.time()
        for node in lost:
            wait_until(partial(log_says, replicas[b], f"node {node} owned here", b_log), timeout=TAKEN_WITHIN_S,
                       what=f"{b} owning {node}", alive=replicas[b])
        taken = time.monotonic() - killed
        assert taken >= LEASE_S - 1.5, f"{a}'s nodes taken {taken:.1f} s after the kill, before its Lease expired"
        for i, node in enumerate(lost):
            cluster.core.create_namespaced_pod(cluster.namespace, pod_manifest(f"after-{i}", node, "sleep 3600"))
        for i, node in enumerate(lost):
            wait_until(partial(reached, cluster, sims, f"after-{i}", node), timeout=REACH_S,
                       what=f"after-{i} reaching {node} through {b}", interval=1.0)
        for node in lost:  # b writes their status and Leases now
            wait_until(partial(lease_renewed_after, cluster, node, killed_wall + 1.0), timeout=60,
                       what=f"{node}'s Lease renewed by {b}", interval=0.5)
        print(f"\n{'routed' if routed else 'shared topic'}: {a} killed: its {len(lost)} nodes owned by {b} "
              f"{taken:.1f} s after, their pods reaching them "
              f"{time.monotonic() - killed:.1f} s after")
        if routed:
            wait_until(partial(log_says, hub, f"routing edgecontroller's messages over replicas {[b]}"),
                       timeout=30, what=f"CloudHub routing to {b} alone")
        else:
            assert not log_says(hub, "routing edgecontroller"), "a CloudHub without the setting reads no Leases"
        assert running(cluster, "before-1"), f"{b}'s own real node was disturbed"

    # 3. Never two owners, and every resync sent by a replica inside its own spell for the node.
    every = [spell for identity, process in replicas.items()
             for spell in spells(identity, process.log_path, kills.get(identity))]
    overlapping = [(x, y) for i, x in enumerate(every) for y in every[i + 1:] if x.overlaps(y)]
    assert not overlapping, f"owned by two replicas at once: {overlapping}"
    outside = []
    for identity, process in replicas.items():
        for at, line in timed_lines(process.log_path):
            if (match := RESYNCED.search(line)) is not None:
                node = match.group(1)
                if not any(s.replica == identity and s.node == node and s.covers(at) for s in every):
                    outside.append(f"{identity}: {line}")
    assert not outside, f"resyncs sent by a replica that did not own the node: {outside}"


def _delete_nodes(cluster: Cluster, names: list[str]) -> None:
    """The simulated nodes' names are fixed (edgehive.bench.simnode): their Nodes must not outlive the test."""
    for name in names:
        with contextlib.suppress(k8s.exceptions.ApiException):
            cluster.core.delete_node(name)
