"""The leader election decision, without a network: a fake Lease store with resourceVersions and a fake clock."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cloud.edgecontroller.controller import EdgeControllerSettings
from cloud.kube import KubeError
from cloud.replicas.elected import _elect
from cloud.replicas.leader import LeaderElector, leader_lease, may_take
from schemas.timefmt import micro_time
from tests.unit.test_tokens import T0, Clock


class LeaseStore:
    """The API's optimistic concurrency for one namespace's Leases; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def get_lease(self, _namespace: str, name: str, timeout_s: float | None = None) -> dict[str, Any] | None:
        if self.down:
            raise KubeError(0, "API server unreachable")
        found = self.leases.get(name)
        return copy.deepcopy(found) if found is not None else None

    def write_lease(self, _namespace: str, body: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        if self.down:
            raise KubeError(0, "API server unreachable")
        name = body["metadata"]["name"]
        current = self.leases.get(name)
        read_at = body["metadata"].get("resourceVersion")
        if (current is None) != (read_at is None) or (current and current["metadata"]["resourceVersion"] != read_at):
            raise KubeError(409, "conflict")
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[name] = stored
        return copy.deepcopy(stored)

    def delete_lease(self, _namespace: str, name: str, timeout_s: float | None = None) -> None:
        self.leases.pop(name, None)


def elector(store: LeaseStore, identity: str, clock: Clock, duration_s: int = 6) -> LeaderElector:
    return LeaderElector(store, "edgecontroller", identity, duration_s, clock=clock)  # type: ignore[arg-type]


def held_by(identity: str, renewed: float, duration_s: int = 6) -> dict[str, Any]:
    return {"metadata": {"name": "edgecontroller"},
            "spec": {"holderIdentity": identity, "leaseDurationSeconds": duration_s,
                     "acquireTime": micro_time(renewed), "renewTime": micro_time(renewed)}}


def test_a_lease_is_taken_when_absent_own_or_expired_only() -> None:
    assert may_take(None, "a", T0)
    assert may_take(held_by("a", T0), "a", T0 + 1)
    assert not may_take(held_by("b", T0), "a", T0 + 5.9)
    assert may_take(held_by("b", T0), "a", T0 + 6)


def test_a_takeover_counts_a_transition_and_a_renewal_keeps_the_acquire_time() -> None:
    taken = leader_lease(held_by("b", T0), name="edgecontroller", identity="a", duration_s=6, now=T0 + 7)
    assert taken["spec"]["holderIdentity"] == "a"
    assert taken["spec"]["acquireTime"] == micro_time(T0 + 7)
    assert taken["spec"]["leaseTransitions"] == 1
    renewed = leader_lease(taken, name="edgecontroller", identity="a", duration_s=6, now=T0 + 9)
    assert renewed["spec"]["acquireTime"] == micro_time(T0 + 7)
    assert renewed["spec"]["renewTime"] == micro_time(T0 + 9)


def test_one_leader_and_a_standby_that_takes_over_only_after_expiry() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_lead()
    assert not b.try_lead()  # a holds it
    clock.now += 5.9  # a died without renewing: b still waits
    assert not b.try_lead()
    assert not b.leading()
    clock.now += 0.1
    assert b.try_lead()
    assert store.leases["edgecontroller"]["spec"]["holderIdentity"] == "b"


def test_a_leader_that_cannot_renew_stops_before_a_standby_may_take_over() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_lead()
    store.down = True  # a is cut off from the API server
    clock.now += 2
    assert not a.try_lead()
    stops_at = a.valid_until()
    assert a.leading(stops_at - 0.01)
    assert not a.leading(stops_at)
    store.down = False
    clock.now = stops_at
    assert not b.try_lead()  # when a stops, its Lease has not expired yet: never two leaders
    clock.now = T0 + 6
    assert b.try_lead()


def test_two_candidates_racing_on_one_read_cannot_both_win() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    read = store.get_lease("", "edgecontroller")
    store.write_lease("", leader_lease(read, name="edgecontroller", identity="a", duration_s=6, now=T0))
    try:
        store.write_lease("", leader_lease(read, name="edgecontroller", identity="b", duration_s=6, now=T0))
        raised = False
    except KubeError as exc:
        raised = exc.status == 409
    assert raised
    assert not b.try_lead()
    assert a.try_lead()


def test_release_lets_a_standby_lead_at_once() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_lead()
    a.release()
    assert b.try_lead()
    b_lease = store.leases["edgecontroller"]
    a.release()  # a no longer holds it: b's Lease stays
    assert store.leases["edgecontroller"] == b_lease


@pytest.mark.parametrize(("changes", "message"), [({"leader_elect": "Bad/Name"}, "not a Lease name"),
                                                  ({"leader_elect": "ok", "leader_lease_s": 1}, "no time to renew")])
def test_bad_election_flags_stop_the_process_before_it_touches_the_api(changes: dict[str, Any], message: str) -> None:
    s = EdgeControllerSettings(kubeconfig="/nonexistent/kubeconfig", **changes)
    with pytest.raises(SystemExit, match=message):
        _elect("edgecontroller", s)
