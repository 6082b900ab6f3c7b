"""EdgeController's replicas sharing the nodes, without a network: members, nodes and sessions in, the nodes each
replica acts for and what a handover asks of it out (cloud/edgecontroller/shard.py)."""

from __future__ import annotations

import pytest

from cloud.edgecontroller.shard import GROUP, EdgeShard, check_mode
from cloud.replicas.leases import LeaseKeeper, join_delay, lease_name
from cloud.replicas.ownership import owned_by, owner
from schemas import topics
from tests.fixtures.leaseview import DictView

NODES = [f"edge-{i}" for i in range(90)]
MEMBERS = {"ec-a", "ec-b", "ec-c"}


def shards(members: set[str], nodes: list[str] = NODES) -> dict[str, EdgeShard]:
    found = {}
    for member in members:
        shard = EdgeShard(member)
        shard.update(nodes=nodes, members=members)
        found[member] = shard
    return found


def test_the_only_edgecontroller_acts_for_every_node_as_today() -> None:
    alone = EdgeShard()
    assert not alone.sharded
    assert alone.owned is None
    assert all(alone.owns(node) for node in [*NODES, "not-registered-yet"])
    assert not alone.update(nodes=NODES, members=MEMBERS), "nothing ever moves"
    assert alone.topic() is None
    assert alone.query_src() == "edgecontroller"


def test_every_node_has_exactly_one_owner_among_the_replicas() -> None:
    replicas = shards(MEMBERS)
    for node in [*NODES, "registering-1", "registering-2"]:  # known to the informer or not
        owners = [member for member, shard in replicas.items() if shard.owns(node)]
        assert owners == [owner(node, MEMBERS)]
    for member, shard in replicas.items():
        assert shard.owned == frozenset(owned_by(member, NODES, MEMBERS))
        assert 0 < len(shard.owned or ()) < len(NODES)


def test_a_replica_owns_nothing_until_it_counts_itself_and_nothing_once_its_lease_is_gone() -> None:
    shard = EdgeShard("ec-a")
    assert not shard.owns("edge-1"), "no members read yet"
    first = shard.update(nodes=NODES, members={"ec-b"})  # the others count it; it does not yet (join delay)
    assert not first
    assert not any(shard.owns(node) for node in NODES)
    joined = shard.update(members={"ec-a", "ec-b"})
    assert joined.gained == shard.owned
    assert all(shard.owns(node) for node in joined.gained)
    gone = shard.update(members={"ec-b"})  # its own Lease could not be renewed in time
    assert gone.lost == joined.gained
    assert not any(shard.owns(node) for node in NODES)


def test_one_replica_sharded_owns_every_node_once_it_counts() -> None:
    shard = EdgeShard("ec-a")
    handover = shard.update(nodes=NODES, members={"ec-a"})
    assert handover.gained == frozenset(NODES)
    assert shard.owns("registering-1")


def test_ownership_answers_follow_a_change_of_members() -> None:
    """The answers are cached per node; a member leaving must not leave a stale answer behind."""
    shard = EdgeShard("ec-a")
    shard.update(nodes=NODES, members=MEMBERS)
    before = {node: shard.owns(node) for node in NODES}
    shard.update(members={"ec-a"})  # the others died: every node is ours
    assert all(shard.owns(node) for node in NODES)
    shard.update(members=MEMBERS)
    assert {node: shard.owns(node) for node in NODES} == before


def test_a_handover_resyncs_gained_live_nodes_watches_gained_silent_ones_and_forgets_lost_ones() -> None:
    shard = EdgeShard("ec-a")
    shard.update(nodes=NODES, members=MEMBERS)
    held = set(shard.owned or ())
    handover = shard.update(members={"ec-a", "ec-b"})  # ec-c died: some of its nodes come here
    assert handover.gained
    assert not handover.lost
    gained = sorted(handover.gained)
    live, silent, never = gained[0::3], gained[1::3], gained[2::3]
    sessions = {node: f"s-{node}" for node in [*live, *silent, *sorted(held)]}
    moves = shard.moves(handover, sessions=sessions, connected={*live, *held})
    assert moves.resync == tuple(live)
    assert moves.watch == tuple(silent)
    assert not set(never) & {*moves.resync, *moves.watch}, "never announced: its first session resyncs it"
    assert moves.forget == ()
    back = shard.update(members=MEMBERS)  # ec-c is back: what it had moves back
    moves = shard.moves(back, sessions=sessions, connected=set(live))
    assert moves.forget == tuple(gained)
    assert moves.resync == moves.watch == ()


def test_a_node_moves_from_one_replica_to_another_never_to_two() -> None:
    """Every replica computes the same handover from the same members: what one loses, exactly one gains."""
    replicas = shards(MEMBERS)
    after = {"ec-a", "ec-b"}
    lost_c = set(replicas["ec-c"].owned or ())
    handovers = {member: shard.update(members=after) for member, shard in replicas.items()}
    assert handovers["ec-c"].lost == lost_c
    gained_a, gained_b = handovers["ec-a"].gained, handovers["ec-b"].gained
    assert gained_a | gained_b == lost_c
    assert not gained_a & gained_b
    assert not handovers["ec-a"].lost
    assert not handovers["ec-b"].lost


def test_a_replica_has_its_own_topic_and_query_src() -> None:
    shard = EdgeShard("r1")
    assert shard.topic() == topics.from_edge("edgecontroller-r1") != topics.from_edge(GROUP)
    assert shard.query_src() == "edgecontroller-r1"
    assert topics.inbox(topics.Side.CLOUD, shard.query_src()) == "edgehive/cloud/edgecontroller-r1"
    assert lease_name(GROUP, "r1") == shard.query_src(), "the Lease and the topic carry one name"


def test_modes_are_checked_by_name() -> None:
    check_mode(replica_id="", leader_elect="")
    check_mode(replica_id="", leader_elect="edgecontroller")  # active/standby, as today
    check_mode(replica_id="r1", leader_elect="")
    with pytest.raises(ValueError, match="replica_id 'r1' and leader_elect 'ec'"):
        check_mode(replica_id="r1", leader_elect="ec")
    for bad in ("R1", "1r", "r_1", "r.1", "r" * 49):
        with pytest.raises(ValueError, match="replica_id"):
            check_mode(replica_id=bad, leader_elect="")
    check_mode(replica_id="r" * 48, leader_elect="")


def test_replica_module_names_only_valid_modules() -> None:
    assert topics.replica_module("edgecontroller", "b-2") == "edgecontroller-b-2"
    for module, replica in (("edgecontroller", ""), ("edgecontroller", "a/b"), ("edgecontroller", "+"),
                            ("Edge", "a"), ("edgecontroller", "x" * 60)):
        with pytest.raises(ValueError, match="not a valid module name"):
            topics.replica_module(module, replica)


def test_the_join_delay_an_observer_uses_is_the_keepers() -> None:
    for duration in (2, 10, 15, 40):
        keeper = LeaseKeeper(None, group=GROUP, identity="a",  # type: ignore[arg-type]
                             duration_s=duration, view=DictView({}))
        assert keeper.join_delay_s == pytest.approx(join_delay(duration))
