"""Rendezvous ownership of nodes by replicas: agreement, minimal moves, balance."""

from __future__ import annotations

from cloud.replicas.ownership import assign, balance, moves, owned_by, owner, weight

NODES = [f"edge-{i:04d}" for i in range(3000)]
THREE = ["cloudhub-a", "cloudhub-b", "cloudhub-c"]


def test_every_replica_computes_the_same_owner_whatever_the_order_of_members() -> None:
    first = assign(NODES, THREE)
    assert assign(NODES, list(reversed(THREE))) == first
    assert assign(NODES, sorted(THREE, key=lambda m: m[-1] == "b")) == first
    assert set(first) == set(NODES)
    assert weight("cloudhub-a", "edge-0001") == weight("cloudhub-a", "edge-0001")  # not salted per process


def test_balance_of_three_members_over_3000_nodes_is_within_a_fifth() -> None:
    assignment = assign(NODES, THREE)
    assert balance(assignment, THREE) <= 1.2
    assert {owner_ for owner_ in assignment.values()} == set(THREE)


def test_a_member_leaving_moves_only_its_own_nodes() -> None:
    before = assign(NODES, THREE)
    moved = moves(NODES, THREE, ["cloudhub-a", "cloudhub-c"])
    assert {m.node for m in moved} == {node for node, o in before.items() if o == "cloudhub-b"}
    assert all(m.before == "cloudhub-b" and m.after in ("cloudhub-a", "cloudhub-c") for m in moved)
    # the survivors share the leaver's nodes rather than one taking them all
    taken = [m.after for m in moved]
    assert min(taken.count("cloudhub-a"), taken.count("cloudhub-c")) > len(moved) / 3


def test_a_member_joining_takes_nodes_from_every_other_and_moves_nothing_else() -> None:
    moved = moves(NODES, THREE, [*THREE, "cloudhub-d"])
    assert all(m.after == "cloudhub-d" for m in moved)
    assert {m.before for m in moved} == set(THREE)
    assert 0.15 * len(NODES) < len(moved) < 0.35 * len(NODES)  # about a quarter


def test_a_replica_outside_the_live_members_owns_nothing() -> None:
    assert owned_by("cloudhub-z", NODES, THREE) == set()
    mine = owned_by("cloudhub-a", NODES, THREE)
    assert mine == {node for node, o in assign(NODES, THREE).items() if o == "cloudhub-a"}
    assert owned_by("solo", NODES, ["solo"]) == set(NODES)


def test_no_members_no_owner() -> None:
    assert owner("edge-0001", []) is None
    assert assign(NODES, []) == {}
    assert all(m.after is None for m in moves(NODES[:10], THREE, []))
