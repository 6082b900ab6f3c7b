"""Replica Leases without a server: reading them, who is live, how a renewal is written, and when a renewal counts
(only once the watch has shown it)."""

from __future__ import annotations

from typing import Any, cast

from cloud.kube import Kube, KubeError
from cloud.replicas.leases import GROUP_LABEL, LeaseKeeper, ReplicaLease, live, next_lease
from schemas.timefmt import micro_time
from tests.fixtures.leaseview import DictView

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
    """The calls a LeaseKeeper makes, on a dict of Lease bodies, each write a new resourceVersion; ``cut``: the API
    server cannot be reached (nor can the keeper's watch, ``view``)."""

    def __init__(self, leases: list[dict[str, Any]]) -> None:
        self.leases = {item["metadata"]["name"]: item for item in leases}
        self.cut = False
        self.timeouts: list[float] = []
        self.calls: list[str] = []
        self.version = 100
        self.cut_listing = False

    def view(self) -> DictView:
        return DictView(self.leases, cut=lambda: self.cut)

    def get_lease(self, _namespace: str, name: str, timeout_s: float) -> dict[str, Any] | None:
        self.timeouts.append(timeout_s)
        self.calls.append("get")
        if self.cut:
            raise KubeError(0, "API server unreachable")
        return self.leases.get(name)

    def list_leases(self, _namespace: str, _selector: str, timeout_s: float) -> list[dict[str, Any]]:
        self.timeouts.append(timeout_s)
        self.calls.append("list")
        if self.cut or self.cut_listing:
            raise KubeError(0, "API server unreachable")
        return list(self.leases.values())

    def write_lease(self, _namespace: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.timeouts.append(timeout_s)
        self.calls.append("write")
        if self.cut:
            raise KubeError(0, "API server unreachable")
        name = body["metadata"]["name"]
        stored = self.leases.get(name)
        if (stored is None) != (not body["metadata"].get("resourceVersion")) or (
                stored is not None and stored["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]):
            raise KubeError(409, "the object has been modified")
        self.version += 1
        written = dict(body, metadata=dict(body["metadata"], resourceVersion=str(self.version)))
        self.leases[name] = written
        return written


def keeper_of(api: _Api, now: list[float], duration: int, identity: str = "a") -> LeaseKeeper:
    return LeaseKeeper(cast(Kube, api), group="cloudhub", identity=identity, duration_s=duration,
                       view=api.view(), clock=lambda: now[0])


def test_a_keeper_cut_off_from_the_api_counts_a_member_that_was_still_joining_and_so_never_takes_a_node() -> None:
    now = [T0]
    api = _Api([lease("a", T0 - 1, T0 - 100, duration=3), lease("b", T0 - 1, T0 - 100, duration=3),
                lease("c", T0 - 0.1, T0 - 0.1, duration=3)])
    keeper = keeper_of(api, now, 3)
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
    and a node was served by two replicas for half a second. The watch goes on reading without renewals, and
    a member still joining at the last renewal is counted once it has joined, though the others are frozen."""
    now = [T0]
    api = _Api([lease("a", T0 - 0.5, T0 - 100, duration=3), lease("b", T0 - 0.5, T0 - 100, duration=3),
                lease("c", T0 - 0.5, T0 - 0.5, duration=3)])  # c came back just before a's last renewal
    keeper = keeper_of(api, now, 3)
    assert keeper.tick() == {"a", "b"}
    # a goes off the broker (no more tick): its others are frozen 1.5 renew intervals after its last renewal
    moments = [T0 + 0.3]
    while moments[-1] < T0 + 3:
        moments.append(keeper.next_change(moments[-1]))
    assert T0 - 0.5 + keeper.join_delay_s in moments, f"recount when c joins: {moments}"
    now[0] = T0 - 0.5 + keeper.join_delay_s + 0.01  # the others count c now, and c takes its nodes soon after
    assert now[0] < keeper.valid_until(), "a still serves: the case in point"
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
    keeper = keeper_of(api, now, 6)
    assert keeper.tick() == {"a", "b"}
    assert api.timeouts == [keeper.renew_interval_s / 2]  # an ordinary renewal: one write, half an interval
    now[0] = keeper.valid_until() - 0.3  # off the broker until now: 0.3 s of serving left
    api.timeouts.clear()
    keeper.tick()
    assert sum(api.timeouts) <= 0.3 + 1e-9, f"the write may take {sum(api.timeouts)} s, past the deadline"
    api.cut = True
    now[0] = keeper.valid_until() - 0.3
    api.timeouts.clear()
    keeper.tick()  # fails: the Lease runs out, and the replica stops serving on time
    now[0] = keeper.valid_until()
    assert keeper.members() == {"b"}


def test_a_renewal_is_one_write_and_reads_nothing_while_the_watch_keeps_up() -> None:
    now = [T0]
    api = _Api([lease("b", T0 - 0.5, T0 - 100, duration=6)])
    keeper = keeper_of(api, now, 6)
    for _ in range(4):
        keeper.tick()
        now[0] += keeper.renew_interval_s
    assert api.calls == ["write"] * 4, "a create, then renewals over the Lease the last write returned"
    assert keeper.serving()


class _StaleBodyView(DictView):
    """A watch that has not yet shown the last write to the keeper's Lease."""

    def __init__(self, source: dict[str, dict[str, Any]], stale: dict[str, dict[str, Any]]) -> None:
        super().__init__(source)
        self.stale = stale

    def body(self, name: str) -> dict[str, Any] | None:
        return self.stale.get(name)


def test_a_lease_written_by_someone_else_meanwhile_costs_one_read_and_the_renewal_still_counts() -> None:
    now = [T0]
    api = _Api([])
    keeper = keeper_of(api, now, 6)
    keeper.tick()
    stale = {"cloudhub-a": api.leases["cloudhub-a"]}
    api.version += 1  # written by hand since: the keeper's next write over its own last one conflicts
    api.leases["cloudhub-a"] = dict(stale["cloudhub-a"],
                                    metadata=dict(stale["cloudhub-a"]["metadata"], resourceVersion=str(api.version)))
    keeper.view = _StaleBodyView(api.leases, stale)
    now[0] += keeper.renew_interval_s
    api.calls.clear()
    keeper.tick()
    assert api.calls == ["write", "get", "write"]
    assert keeper.valid_until() == now[0] + 6 - keeper.margin_s, "the renewal counts"


class _LaggingView(DictView):
    """A watch stuck at what it last delivered (connected to a server that stopped sending, say): it shows no
    write, and not the Leases written since."""

    def __init__(self, source: dict[str, dict[str, Any]]) -> None:
        super().__init__(dict(source))

    def seen(self, name: str, resource_version: str, timeout_s: float) -> bool:
        return False


def test_a_renewal_the_watch_does_not_show_counts_by_a_listing_which_reads_what_the_watch_missed() -> None:
    """The watch proves the reading current: a renewal it does not show in time counts only by a listing, as
    before the watch (without one, a replica whose watch lagged for good would keep its Lease, so its nodes,
    renewed while serving none of them). What the listing read counts: a joiner the watch missed among it."""
    now = [T0]
    api = _Api([lease("b", T0 - 0.5, T0 - 100, duration=3)])
    keeper = keeper_of(api, now, 3)
    keeper.tick()
    keeper.view = _LaggingView(api.leases)
    api.leases["cloudhub-c"] = lease("c", T0 + 0.1, T0 + 0.1, duration=3)
    now[0] = T0 + keeper.renew_interval_s
    api.calls.clear()
    keeper.tick()
    assert api.calls == ["write", "list"]
    assert keeper.valid_until() == now[0] + 3 - keeper.margin_s, "the renewal counts"
    now[0] = T0 + 0.1 + keeper.join_delay_s
    assert "c" in keeper.members(), "the joiner the watch missed, read by the listing"
    assert keeper.next_change(now[0] - 0.01) == T0 + 0.1 + keeper.join_delay_s


def test_a_renewal_neither_the_watch_nor_a_listing_shows_does_not_count_so_the_replica_stops_serving_on_time(
        ) -> None:
    """A keeper whose watch lags and whose listings fail stops serving when its last counted renewal runs out,
    though its writes succeed (the others, counting it alive, take none of its nodes meanwhile: a gap, never
    two owners)."""
    now = [T0]
    api = _Api([lease("b", T0 - 0.5, T0 - 100, duration=3)])
    keeper = keeper_of(api, now, 3)
    keeper.tick()
    assert keeper.serving()
    until = keeper.valid_until()
    keeper.view = _LaggingView(api.leases)
    api.cut_listing = True
    while now[0] < until + 1:
        now[0] += 0.5
        api.leases["cloudhub-b"] = lease("b", now[0], T0 - 100, duration=3)  # b keeps renewing
        keeper.tick()
        assert keeper.valid_until() == until, "a renewal nothing showed was counted"
    assert "a" not in keeper.members()
    assert api.calls.count("write") >= 3, "the writes went on: the others count a alive, and take nothing"


def test_a_keeper_that_cannot_renew_freezes_the_others_as_read_at_its_last_renewal_whatever_the_watch_says() -> None:
    """Its writes fail while its watch goes on: b's Lease runs out and b comes back (a new acquireTime, the join
    delay again). Frozen from the watch as it is now, b would be left out, and a would take b's nodes on the word
    of a reading it could not renew after; frozen from the reading of its last renewal, b stays."""
    now = [T0]
    api = _Api([lease("a", T0 - 1, T0 - 100, duration=3), lease("b", T0 - 1, T0 - 100, duration=3)])
    keeper = LeaseKeeper(cast(Kube, api), group="cloudhub", identity="a", duration_s=3, view=DictView(api.leases),
                         clock=lambda: now[0])
    assert keeper.tick() == {"a", "b"}
    api.cut = True  # a's writes fail; its watch (not cut) shows what follows
    api.leases["cloudhub-b"] = lease("b", T0 + 1.2, T0 + 1.2, duration=3)
    now[0] = T0 + 1.6  # past 1.5 renew intervals: frozen
    assert keeper.tick() == {"a", "b"}, "b was good at a's last renewal: a must not take its nodes"


class _SlowApi(_Api):
    """Each write takes ``write_s`` of the keeper's clock: the API server's answer comes back that much later."""

    def __init__(self, leases: list[dict[str, Any]], now: list[float], write_s: float) -> None:
        super().__init__(leases)
        self.now = now
        self.write_s = write_s

    def write_lease(self, _namespace: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.now[0] += self.write_s
        return super().write_lease(_namespace, body, timeout_s)


def test_a_joiner_counts_itself_from_when_its_joining_write_came_back_not_from_its_acquire_time() -> None:
    """The others count a joiner from its acquireTime, stamped before the write; an old owner cut off from the API
    stops serving by its own last renewal, before which the joiner's write was not seen. A slow joining write
    would eat into the margin between the two if the joiner counted itself from the stamp."""
    now = [T0]
    api = _SlowApi([lease("b", T0 - 0.5, T0 - 100, duration=6)], now, write_s=0.7)
    keeper = keeper_of(api, now, 6)
    keeper.tick()
    acquired = ReplicaLease.parse(api.leases["cloudhub-a"])
    assert acquired is not None
    assert acquired.acquired == T0
    assert keeper.takes_at() == T0 + 0.7 + keeper.join_delay_s + keeper.take_after_s
    now[0] = T0 + 2.5
    keeper.tick()  # a renewal keeps the membership, and when it was taken
    assert keeper.takes_at() == T0 + 0.7 + keeper.join_delay_s + keeper.take_after_s


def test_a_keeper_cut_off_from_the_api_stops_serving_before_a_joiner_it_cannot_see_takes_its_nodes() -> None:
    """c joins just after a's last renewal, as a loses the API server (and with it the watch): a never reads c,
    and serves every node it had until its own Lease runs out. The others count c only a whole Lease duration
    after it joined, so a has stopped by then."""
    now = [T0]
    a_api = _Api([lease("a", T0 - 1, T0 - 100, duration=6), lease("b", T0 - 1, T0 - 100, duration=6)])
    a = keeper_of(a_api, now, 6)
    assert a.tick() == {"a", "b"}
    leases = dict(a_api.leases)
    a_api.cut = True  # a's writes and its watch fail from now on; c writes to the API server a cannot reach
    c_api = _Api(list(leases.values()))
    now[0] = T0 + 0.01
    c = keeper_of(c_api, now, 6, identity="c")
    c.tick()
    assert a.valid_until() < c.takes_at(), "a serves until its Lease runs out, and c takes its nodes after"
    while now[0] < c.takes_at() + 0.5:
        now[0] += 0.05
        if "c" in c.members():
            assert "a" not in a.tick(), f"{now[0] - T0:.2f} s: a serves nodes c has taken"
