"""The capacity model of ``bench scale --broker nats``: from what one run measured per node, what a fleet of
100,000 nodes needs (CloudHub replicas, NATS members) and which part breaks first. Pure arithmetic.

What scales out and what does not, and so how each part is modelled:

- CloudHub replicas share the nodes (rendezvous hashing): a replica's load is the fleet's divided by the
  replicas, so the model picks as many as keep each under its ceiling.
- EdgeController replicas share the nodes too (cloud/edgecontroller/shard.py), but only part of their work
  divides. Its CPU has two parts, told apart by the two rounds (N=1 and N): what a replica spends per node it
  owns (heartbeats, status and Lease writes, its pods' changes), which divides over the replicas; and what every
  replica spends per node of the whole fleet (its informers see every object's events), which does not. The
  replicas are as many as keep each under its ceiling; the fleet where the second part alone reaches it is a
  limit. Its informer cache does not divide either: every replica caches every Node, Pod, ConfigMap and Secret
  (the API has no per-shard selector for them), so each replica's memory is the whole fleet's cache, and the
  fleet where that reaches a replica's memory is a limit too. DeviceController stays active/standby; the bench
  does not run it.
- NATS members: MQTT in NATS 2.9 keeps every session, retained message and QoS 1 message in one stream each,
  replicated on 3 members (R3), whatever the cluster's size. More members spread the connections, not the
  stream work, so the model takes a member's per-node load as measured with 3 and does not divide it further:
  the stream members carry the whole fleet, and that is a limit.
- kube-apiserver and etcd: what they are measured to take per node is written however the cloud is split; the
  model gives their cores and leaves them out of "breaks first" (they are Kubernetes', sized apart). The
  simulated nodes behave as EdgeD does (edge/edged/nodereport.py): a node status on a change or every 5 min,
  a Lease heartbeat every 10 s between, as a kubelet does; idle nodes, so their Node is rarely written.

A Python process runs its Python code on one core (the GIL): its ceiling is that core less headroom for a
thundering herd. A Go process (nats-server) uses every core it is given: its ceiling is the machine share
assumed for it (Limits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PerNode:
    """What one node costs, from one run."""

    hub_cores: float  # all CloudHub replicas' CPU, per node of the fleet
    hub_kb: float  # one replica's memory, per node it owns
    member_cores: float  # one NATS member's CPU, per node of the fleet (3 members)
    member_kb: float  # one NATS member's memory, per node of the fleet
    controller_cores: float  # an EdgeController replica's CPU per node it owns (divides over the replicas)
    controller_kb: float  # one replica's informer cache, per node of the fleet (each caches every object)
    api_cores: float  # kube-apiserver and etcd, per node
    controller_fleet_cores: float = 0.0  # a replica's CPU per node of the whole fleet (every replica pays it)


@dataclass(frozen=True)
class Limits:
    python_cores: float = 0.7  # one core (the GIL), 30% kept for a herd
    python_mb: float = 4096.0  # what one cloud component's container is given
    member_cores: float = 4.0  # a NATS member's share of its machine
    member_mb: float = 8192.0
    min_replicas: int = 2  # one dead replica must not cut the fleet off
    members: int = 3  # R3 streams: the smallest cluster that survives one member's loss


@dataclass(frozen=True)
class Part:
    """One kind of process at the fleet's size."""

    name: str
    count: int
    cores_each: float
    mb_each: float
    ceiling_cores: float | None  # None: not judged (the API server's)
    ceiling_mb: float | None
    max_nodes: int | None  # the fleet size where one instance reaches a ceiling; None: it scales out

    @property
    def fits(self) -> bool:
        return ((self.ceiling_cores is None or self.cores_each <= self.ceiling_cores)
                and (self.ceiling_mb is None or self.mb_each <= self.ceiling_mb))


@dataclass(frozen=True)
class Capacity:
    fleet: int
    parts: list[Part] = field(default_factory=list)

    def part(self, name: str) -> Part:
        return next(p for p in self.parts if p.name == name)

    @property
    def breaks_first(self) -> Part:
        """The part that cannot scale out and reaches its ceiling at the smallest fleet."""
        limited = [p for p in self.parts if p.max_nodes is not None]
        return min(limited, key=lambda p: p.max_nodes or 0)


def _max_nodes(cores: float, kb: float, ceiling_cores: float, ceiling_mb: float) -> int:
    by_cpu = ceiling_cores / cores if cores > 0 else math.inf
    by_memory = ceiling_mb * 1024 / kb if kb > 0 else math.inf
    limit = min(by_cpu, by_memory)
    return math.floor(limit + 1e-6) if limit != math.inf else 10**12  # 1e-6: 0.7 / 0.00005 is 13999.99...


def model(per: PerNode, fleet: int = 100_000, limits: Limits = Limits()) -> Capacity:
    hub_cores, hub_mb = per.hub_cores * fleet, per.hub_kb * fleet / 1024
    replicas = max(limits.min_replicas, math.ceil(hub_cores / limits.python_cores),
                   math.ceil(hub_mb / limits.python_mb))
    hub = Part("cloudhub", replicas, hub_cores / replicas, hub_mb / replicas, limits.python_cores,
               limits.python_mb, None)
    controller = _controller(per, fleet, limits)
    member = Part("nats-member", limits.members, per.member_cores * fleet, per.member_kb * fleet / 1024,
                  limits.member_cores, limits.member_mb,
                  _max_nodes(per.member_cores, per.member_kb, limits.member_cores, limits.member_mb))
    api = Part("apiserver+etcd", 1, per.api_cores * fleet, 0.0, None, None, None)
    return Capacity(fleet, [hub, controller, member, api])


def _controller(per: PerNode, fleet: int, limits: Limits) -> Part:
    """The owned nodes' CPU divides over the replicas, the fleet-wide CPU and the cache do not: as many replicas as
    leave each under its ceiling beside its fleet-wide share (past that, the count the owned part alone needs)."""
    owned, everyone = per.controller_cores * fleet, per.controller_fleet_cores * fleet
    room = limits.python_cores - everyone
    count = max(limits.min_replicas, math.ceil(owned / (room if room > 0 else limits.python_cores) - 1e-9))
    return Part("edgecontroller", count, everyone + owned / count, per.controller_kb * fleet / 1024,
                limits.python_cores, limits.python_mb,
                _max_nodes(per.controller_fleet_cores, per.controller_kb, limits.python_cores, limits.python_mb))


def controllers_verdict(part: Part, controller_kb: float, fleet_cores: float = 0.0, fleet: int = 100_000,
                        limits: Limits = Limits()) -> str:
    """What the sharded EdgeController needs at ``fleet`` nodes: replicas for its CPU, and whether what sharding
    does not divide (each replica's full informer cache, its CPU per node of the whole fleet) fits a replica."""
    mb = controller_kb * fleet / 1024
    everyone = fleet_cores * fleet
    cache = (f"every replica caches every object, {mb:,.0f} MB each at {fleet:,} nodes, "
             f"{'within' if mb <= limits.python_mb else 'over'} the {limits.python_mb:,.0f} MB a replica is given")
    cpu = (f"; every replica also spends {everyone:.2f} cores on the whole fleet's events, which more replicas do "
           f"not divide ({'within' if everyone < limits.python_cores else 'over'} its {limits.python_cores} core "
           "ceiling)" if fleet_cores > 0 else "")
    limit = ("" if part.max_nodes is None or part.max_nodes >= fleet
             else f"; so a replica is limited to about {part.max_nodes:,} nodes whatever their number: trimming the "
                  "informers (a per-shard watch where the API allows one) is what lifts that")
    return (f"sharded: {part.count} replicas at {fleet:,} nodes, {part.cores_each:.2f} cores each{cpu}; "
            f"{cache}{limit}")
