"""The loop that keeps an EdgeController replica's shard current, stepped on a simulated clock without a thread:
Leases on a dict, two replicas sharing the nodes, one off the broker, one leaving (cloud/replicas/shardloop.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from cloud.edgecontroller.shard import GROUP, EdgeShard
from cloud.kube import Kube, KubeError
from cloud.replicas.assignment import Handover
from cloud.replicas.leases import LeaseKeeper, default_margin, join_delay, lease_name
from cloud.replicas.shardloop import ShardLoop
from schemas.timefmt import micro_time
from tests.fixtures.leaseview import DictView
from tests.fixtures.processes import wait_until

T0 = 1_800_000_000.0
DURATION = 6
NODES = [f"edge-{i}" for i in range(30)]


class Api:
    """The calls a LeaseKeeper makes, on one dict of Leases shared by every replica; ``view`` is a watch of it."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.cut = False

    def view(self) -> DictView:
        return DictView(self.leases, cut=lambda: self.cut)

    def write_lease(self, _namespace: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self.cut:
            raise KubeError(0, "API server unreachable")
        self.leases[body["metadata"]["name"]] = body
        return body

    def delete_lease(self, _namespace: str, name: str, timeout_s: float) -> None:
        self.leases.pop(name, None)


class Replica:
    def __init__(self, api: Api, identity: str, clock: list[float], on_broker: list[bool] | None = None) -> None:
        self.handovers: list[Handover] = []
        self.on_broker = on_broker if on_broker is not None else [True]
        keeper = LeaseKeeper(cast(Kube, api), group=GROUP, identity=identity, duration_s=DURATION,
                             view=api.view(), clock=lambda: clock[0])
        self.shard = EdgeShard(identity)
        self.loop = ShardLoop(keeper, self.shard, lambda: NODES, self.handovers.append,
                              on_broker=lambda: self.on_broker[0], clock=lambda: clock[0])


def run(replicas: list[Replica], clock: list[float], until: float, step: float = 0.05) -> None:
    while clock[0] < until:
        for replica in replicas:
            replica.loop.step()
        clock[0] += step


def test_two_replicas_split_the_nodes_after_the_join_delay_and_one_leaving_hands_them_over_at_once() -> None:
    clock = [T0]
    api = Api()
    a, b = Replica(api, "ec-a", clock), Replica(api, "ec-b", clock)
    run([a, b], clock, T0 + 1.0)
    assert a.shard.owned == b.shard.owned == frozenset(), "nobody serves before the join delay"
    run([a, b], clock, T0 + join_delay(DURATION) + 1.0)
    assert a.shard.owned is not None
    assert b.shard.owned is not None
    assert a.shard.owned | b.shard.owned == frozenset(NODES)
    assert not a.shard.owned & b.shard.owned
    assert a.handovers[0].gained == a.shard.owned
    b.loop.leave()
    assert lease_name(GROUP, "ec-b") not in api.leases, "its Lease deleted: the others need not wait for it"
    assert b.shard.owned == frozenset()
    assert b.handovers[-1].lost
    run([a], clock, clock[0] + 1.0)
    assert a.shard.owned == frozenset(NODES)


def test_a_replica_off_the_broker_renews_once_as_it_leaves_then_lets_its_nodes_go_before_the_other_takes_them(
) -> None:
    clock = [T0]
    api = Api()
    off = [True]
    a, b = Replica(api, "ec-a", clock), Replica(api, "ec-b", clock, off)
    run([a, b], clock, T0 + join_delay(DURATION) + 1.0)
    held = b.shard.owned
    assert held
    off[0] = False
    left = clock[0]
    renewals: set[str] = set()
    both: list[float] = []
    dropped = None
    while clock[0] < T0 + 40:
        a.loop.step()
        b.loop.step()
        renewals.add(api.leases[lease_name(GROUP, "ec-b")]["spec"]["renewTime"])
        if (a.shard.owned or frozenset()) & (b.shard.owned or frozenset()):
            both.append(clock[0])
        if dropped is None and not b.shard.owned:
            dropped = clock[0]
        clock[0] += 0.05
    assert renewals == {micro_time(left)}, "renewed once, as it left the broker, and never after"
    assert both == [], "a node had two owners"
    assert dropped is not None
    assert dropped - left >= DURATION - default_margin(DURATION) - 0.05, \
        "its Lease ran a whole duration from when it left, not from the renewal before"
    assert b.shard.owned == frozenset()
    assert a.shard.owned == frozenset(NODES)


def test_a_replica_never_on_the_broker_never_renews() -> None:
    clock = [T0]
    api = Api()
    a = Replica(api, "ec-a", clock, [False])
    run([a], clock, T0 + 3 * DURATION)
    assert lease_name(GROUP, "ec-a") not in api.leases
    assert a.shard.owned == frozenset()


def test_after_a_failed_step_the_replica_keeps_its_nodes_only_while_its_lease_is_good() -> None:
    """The loop's thread survives a step that raises (a bug) by recounting from the last reading: the nodes stay
    while the Lease is good and go when it runs out, never kept past it, when the others take them."""
    clock = [T0]
    api = Api()
    a = Replica(api, "ec-a", clock)
    run([a], clock, T0 + join_delay(DURATION) + 1.0)
    assert a.shard.owned == frozenset(NODES)
    api.cut = True
    a.loop._fail_safe()
    assert a.shard.owned == frozenset(NODES), "its Lease is still good"
    clock[0] += DURATION
    a.loop._fail_safe()
    assert a.shard.owned == frozenset()
    assert a.handovers[-1].lost == frozenset(NODES)


def test_the_only_replica_needs_no_loop() -> None:
    with pytest.raises(ValueError, match="identity"):
        ShardLoop(cast(LeaseKeeper, None), EdgeShard(None), list, print)


def test_on_its_thread_it_renews_the_lease_and_closing_deletes_it() -> None:
    api = Api()
    handovers: list[Handover] = []
    keeper = LeaseKeeper(cast(Kube, api), group=GROUP, identity="ec-a", duration_s=DURATION, view=api.view())
    loop = ShardLoop(keeper, EdgeShard("ec-a"), lambda: NODES, handovers.append)
    loop.start()
    try:
        wait_until(lambda: lease_name(GROUP, "ec-a") in api.leases, timeout=10, what="the Lease written")
    finally:
        loop.close()
    assert lease_name(GROUP, "ec-a") not in api.leases


def test_a_joining_replica_steps_at_the_moment_it_takes_its_nodes_not_up_to_half_a_second_later() -> None:
    """CloudHub routes to a joiner from its Lease's acquireTime plus the join delay and TAKE_AFTER_S; the joiner's
    own loop must count itself then too, or what CloudHub sends it meanwhile is dropped and resent 10 s later."""
    clock = [T0]
    api = Api()
    a = Replica(api, "ec-a", clock)
    a.loop.step()
    takes_at = a.loop.keeper.takes_at()
    assert takes_at > T0
    run([a], clock, takes_at - 0.2)  # renewing on the way: the join delay is a whole Lease duration
    wait = a.loop.step()
    assert wait <= takes_at - clock[0] + 0.02
    clock[0] += wait
    a.loop.step()
    assert a.shard.owned == frozenset(NODES), "the step due at its join moment takes the nodes"
