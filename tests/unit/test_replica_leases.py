"""Replica Leases without a server: reading them, who is live, and how a renewal is written."""

from __future__ import annotations

from typing import Any, cast

from cloud.kube import Kube, KubeError
from cloud.replicas.leases import GROUP_LABEL, LeaseKeeper, ReplicaLease, live, next_lease
from schemas.timefmt import micro_time

T0 = 1_800_000_000.0


def lease(identity: str, renewed: float, acquired: float | None = None, duration: int = 10) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": identity, "leaseDurationSeconds": duration,
                            "renewTime": micro_time(renewed)}
    if acquired is not None:
        spec["acquireTime"] = micro_time(acquired)
    return {"metadata": {"name": f"cloudhub-{identity}", "resourceVersion": "7"}, "spec": spec}


def test_parse_reads_holder_times_and_duration_and_refuses_incomplete_leases() -> None:
    found = ReplicaLease.parse(lease("a", T0 + 0.25, T0 - 5))
    assert found == ReplicaLease("a", T0 + 0.25, 10.0, T0 - 5)
    assert found.expires == T0 + 10.25
    assert ReplicaLease.parse({"spec": {"leaseDurationSeconds": 10, "renewTime": micro_time(T0)}}) is None
    assert ReplicaLease.parse({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}}) is None
    assert ReplicaLease.parse({"spec": {"holderIdentity": "a", "renewTime": micro_time(T0)}}) is None
    assert ReplicaLease.parse(lease("a", T0)) == ReplicaLease("a", T0, 10.0, T0)  # no acquireTime: renewTime


def test_a_member_is_dead_once_renew_time_plus_duration_is_past_and_counts_only_after_the_join_delay() -> None:
    leases = [ReplicaLease("a", T0, 10, T0 - 100), ReplicaLease("b", T0 + 5, 10, T0 + 4)]
    assert live(leases, T0 + 9.9, join_delay_s=2) == {"a", "b"}
    assert live(leases, T0 + 10.0, join_delay_s=2) == {"b"}
    assert live(leases, T0 + 5.5, join_delay_s=2) == {"a"}  # b joined 1.5 s ago
    assert live(leases, T0 + 15.1) == set()


def test_first_lease_is_created_with_acquire_time_and_group_label() -> None:
    body = next_lease(None, group="cloudhub", identity="a", duration_s=10, now=T0)
    assert body["metadata"] == {"name": "cloudhub-a", "namespace": "edgehive-system",
                                "labels": {GROUP_LABEL: "cloudhub"}}
    assert body["spec"] == {"holderIdentity": "a", "leaseDurationSeconds": 10, "acquireTime": micro_time(T0),
                            "renewTime": micro_time(T0), "leaseTransitions": 0}


def test_renewal_keeps_acquire_time_and_resource_version_while_the_lease_is_good() -> None:
    current = lease("a", T0, T0 - 50)
    body = next_lease(current, group="cloudhub", identity="a", duration_s=10, now=T0 + 3)
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["spec"]["acquireTime"] == micro_time(T0 - 50)
    assert body["spec"]["renewTime"] == micro_time(T0 + 3)
    assert current["spec"]["renewTime"] == micro_time(T0)  # the read copy is left alone


def test_renewing_an_expired_lease_is_a_new_membership() -> None:
    body = next_lease(lease("a", T0, T0 - 50), group="cloudhub", identity="a", duration_s=10, now=T0 + 11)
    assert body["spec"]["acquireTime"] == micro_time(T0 + 11)
    assert body["spec"]["leaseTransitions"] == 1


class _Api:
    """The two calls a LeaseKeeper makes, on a dict of Lease bodies; ``cut``: the API server cannot be reached."""

    def __init__(self, leases: list[dict[str, Any]]) -> None:
        self.leases = {item["metadata"]["name"]: item for item in leases}
        self.cut = False
        self.timeouts: list[float] = []

    def list_leases(self, _namespace: str, _selector: str, timeout_s: float) -> list[dict[str, Any]]:
        self.timeouts.append(timeout_s)
        if self.cut:
            raise KubeError(0, "API server unreachable")
        return list(self.leases.values())

    def write_lease(self, _namespace: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.timeouts.append(timeout_s)
        if self.cut:
            raise KubeError(0, "API server unreachable")
        self.leases[body["metadata"]["name"]] = body
        return body


def test_a_keeper_cut_off_from_the_api_counts_a_member_that_was_still_joining_and_so_never_takes_a_node() -> None:
    now = [T0]
    api = _Api([lease("a", T0 - 1, T0 - 100, duration=3), lease("b", T0 - 1, T0 - 100, duration=3),
                lease("c", T0 - 0.1, T0 - 0.1, duration=3)])
    keeper = LeaseKeeper(cast(Kube, api), group="cloudhub", identity="a", duration_s=3, clock=lambda: now[0])
    assert keeper.tick() == {"a", "b"}  # c joined 0.1 s ago: not counted yet, by anyone
    api.cut = True
    now[0] = T0 + 1.6  # past 1.5 renew intervals: the readings are stale, the others frozen
    assert keeper.tick() == {"a", "b", "c"}, "the others count c by now: so must a, or it keeps c's nodes"
    now[0] = T0 + 2.7  # past the Lease (3 s) less its margin: a serves nothing
    assert keeper.members() == {"b", "c"}


def test_a_keeper_off_the_broker_sees_a_member_rejoin_and_lets_its_nodes_go() -> None:
    """Found by the HA fleet test: a replica off the cloud broker renews nothing and, before, listed nothing
    either, so a member that came back meanwhile was missing from its frozen others: the joiner took its nodes
    (the others could have listed it by then) while this one went on serving them until its own Lease ran out,
    and a node was served by two replicas for half a second. ``observe`` lists without renewing."""
    now = [T0]
    api = _Api([lease("a", T0 - 0.5, T0 - 100, duration=3), lease("b", T0 - 0.5, T0 - 100, duration=3),
                lease("c", T0 - 10, T0 - 100, duration=3)])  # c's Lease ran out: c is dead
    keeper = LeaseKeeper(cast(Kube, api), group="cloudhub", identity="a", duration_s=3, clock=lambda: now[0])
    assert keeper.tick() == {"a", "b"}
    # a goes off the broker (no more tick); c comes back with a new Lease
    api.leases["cloudhub-c"] = lease("c", T0 + 0.2, T0 + 0.2, duration=3)
    now[0] = T0 + 0.2 + keeper.join_delay_s + 0.01  # the others count c now, and c takes its nodes soon after
    assert now[0] < keeper.valid_until(), "a still serves: the case in point"
    assert keeper.members() == {"a", "b"}  # from the last reading: c's nodes would stay with a
    assert keeper.observe() == {"a", "b", "c"}
    assert api.leases["cloudhub-a"]["spec"]["renewTime"] == micro_time(T0), "observe renews nothing"
    api.cut = True  # the API gone too: what was seen is kept, nothing is given back to a
    assert keeper.observe() == {"a", "b", "c"}


def test_a_renewal_just_before_the_lease_runs_out_ends_before_this_replica_would_stop_serving() -> None:
    """Found by the HA fleet test: a replica back on the broker 0.8 s before its Lease ran out renewed while the
    API server was slow; the blocked call kept it serving past its own deadline while the others, reading the
    Lease as run out, took its nodes. The calls of such a renewal are bounded by what is left of the Lease."""
    now = [T0]
    api = _Api([lease("a", T0 - 0.5, T0 - 100, duration=6), lease("b", T0 - 0.5, T0 - 100, duration=6)])
    keeper = LeaseKeeper(cast(Kube, api), group="cloudhub", identity="a", duration_s=6, clock=lambda: now[0])
    assert keeper.tick() == {"a", "b"}
    assert api.timeouts == [keeper.renew_interval_s / 2] * 2  # an ordinary renewal: half an interval each
    now[0] = keeper.valid_until() - 0.3  # off the broker until now: 0.3 s of serving left
    api.timeouts.clear()
    keeper.tick()
    assert sum(api.timeouts) <= 0.3 + 1e-9, f"list and write may take {sum(api.timeouts)} s, past the deadline"
    api.cut = True
    now[0] = keeper.valid_until() - 0.3
    api.timeouts.clear()
    keeper.tick()  # fails: the Lease runs out, and the replica stops serving on time
    now[0] = keeper.valid_until()
    assert keeper.members() == {"b"}
