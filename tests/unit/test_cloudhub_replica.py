"""A CloudHub replica's share of the fleet without a network: handovers in, sessions and deliveries out."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from itertools import count
from typing import cast

import pytest

from cloud.cloudhub.hub import CloudHubSettings
from cloud.cloudhub.replica import Membership
from cloud.cloudhub.routing import CloudRouter, Routed
from cloud.kube import Kube
from cloud.packed import Packed
from cloud.replicas import assignment
from cloud.replicas.assignment import NodeAssignment
from cloud.replicas.ownership import owned_by
from runtime.component import bus_settings
from runtime.counters import Counters
from schemas import topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import Envelope, Group, Op, decode
from schemas.link import SessionNews
from schemas.resource import ResourceKey

NODES = [f"edge-{i}" for i in range(60)]


@pytest.fixture
def router() -> CloudRouter:
    ids = count(1)
    made = CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=40.0, session_id=lambda: f"s{next(ids)}")
    made.owned = set()
    return made


def configmap_for(node: str) -> Envelope:
    return Envelope(node=node, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                    res=ResourceKey("default", "configmap", "c"), rv="5", body={})


def test_assignment_hands_over_only_what_changed() -> None:
    a = NodeAssignment("a")
    first = a.update(nodes=NODES, members={"a", "b", "c"})
    assert first.lost == frozenset()
    assert first.gained == a.owned
    assert 0 < len(a.owned) < len(NODES)
    c_gone = a.update(members={"a", "b"})
    assert not c_gone.lost
    assert c_gone.gained
    assert c_gone.gained.isdisjoint(first.gained)
    assert not a.update(members={"b", "a"}), "the same members again move nothing"
    new_node = a.update(nodes=[*NODES, "edge-late"])
    assert new_node.gained <= {"edge-late"}
    assert not new_node.lost
    held = a.owned
    alone_lost = a.update(members={"b"})  # a's own Lease ran out: it serves nothing
    assert alone_lost.lost == held
    assert a.owned == frozenset()


def test_assignment_is_not_hashed_again_when_nothing_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Membership asks every half second; at 100,000 nodes a pass costs 190 ms, so only a change recomputes."""
    calls: list[int] = []

    def counted(member: str, nodes: Iterable[str], members: Collection[str]) -> set[str]:
        calls.append(1)
        return owned_by(member, nodes, members)

    monkeypatch.setattr(assignment, "owned_by", counted)
    a = NodeAssignment("a")
    assert not a.update(nodes=[], members=set())  # nothing known yet: owns nothing, computed once
    first = a.update(nodes=NODES, members={"a", "b"})
    assert first.gained
    assert len(calls) == 2
    for _ in range(3):
        assert not a.update(nodes=list(NODES), members={"b", "a"})
    assert len(calls) == 2
    assert a.update(members={"a"}).gained == frozenset(NODES) - first.gained
    assert len(calls) == 3


def test_a_replica_delivers_only_to_the_nodes_it_owns(router: CloudRouter) -> None:
    assert router.from_module(configmap_for("edge-1"), 0.0).wake is False
    assert "edge-1" not in router.queues
    assert router.counters.get("not_owned") == 1
    keepalive = Envelope(node="edge-1", src="edgehub", group=Group.HUB, op=Op.KEEPALIVE)
    assert router.from_node(keepalive, topics.link_up("edge-1"), 0.0).announce == []


def announced_live(router: CloudRouter, *nodes: str) -> None:
    """Each of ``nodes`` connected, as the replica that had it last announced (its retained announcement)."""
    for node in nodes:
        router.heard_news(node, SessionNews(f"old-{node}", True, "r-old"))


def test_taking_a_node_announces_a_new_session_so_the_controllers_resync_it(router: CloudRouter) -> None:
    announced_live(router, "edge-1")
    taken = router.take("edge-1", 1.0)
    (announce,) = taken.announce
    assert announce.topic == topics.node_session("edge-1")
    assert SessionNews.parse(announce.envelope.body) == SessionNews("s1", True)
    assert router.from_module(configmap_for("edge-1"), 1.5).wake
    assert [node for node, _ in router.due(2.0)] == ["edge-1"]
    # not heard from within the keepalive timeout: announced gone, replacing a dead owner's "connected"
    (gone,) = router.expire(42.0).announce
    assert SessionNews.parse(gone.envelope.body) == SessionNews("s1", False)


def test_a_gained_node_is_taken_and_announced_only_when_its_subscription_is_confirmed(router: CloudRouter) -> None:
    announced_live(router, "edge-1")
    router.gain("edge-1")
    assert not router.owns("edge-1")  # nothing delivered, nothing announced: the node's answers would be lost
    assert router.from_module(configmap_for("edge-1"), 0.5) == Routed()
    assert router.subscribed(topics.link_down("edge-1"), 1.0) == Routed()  # not its up topic
    assert router.subscribed(topics.link_up("edge-2"), 1.0) == Routed()  # not pending
    assert router.subscribed(topics.all_links(topics.Direction.UP), 1.0) == Routed()
    taken = router.subscribed(topics.link_up("edge-1"), 1.0)
    (announce,) = taken.announce
    assert SessionNews.parse(announce.envelope.body) == SessionNews("s1", True)  # the controllers resync it
    assert router.owns("edge-1")
    # the same SUBACK again (the subscription asked again after a reconnect): no new session, no resync
    assert router.subscribed(topics.link_up("edge-1"), 2.0) == Routed()


def test_a_node_lost_before_its_subscription_was_confirmed_is_not_taken(router: CloudRouter) -> None:
    router.gain("edge-1")
    router.drop("edge-1")
    assert router.subscribed(topics.link_up("edge-1"), 1.0) == Routed()
    assert not router.owns("edge-1")
    assert "edge-1" not in router.sessions


def test_a_node_that_comes_back_gets_a_new_session(router: CloudRouter) -> None:
    """Ownership moved away and back (a replica restarted): the resync runs again, since what the other
    owner sent meanwhile, or failed to, is not known here."""
    announced_live(router, "edge-1")
    router.gain("edge-1")
    router.subscribed(topics.link_up("edge-1"), 1.0)
    router.drop("edge-1")
    router.gain("edge-1")
    (announce,) = router.subscribed(topics.link_up("edge-1"), 2.0).announce
    assert SessionNews.parse(announce.envelope.body) == SessionNews("s2", True)


def test_dropping_a_node_forgets_it_without_announcing(router: CloudRouter) -> None:
    router.take("edge-1", 1.0)
    router.from_module(configmap_for("edge-1"), 1.5)
    router.drop("edge-1")
    assert router.due(2.0) == []
    assert "edge-1" not in router.sessions
    assert "edge-1" not in router.queues
    assert router.expire(100.0).announce == []
    assert router.announce_all().announce == []


def test_a_lone_cloudhub_owns_every_node() -> None:
    lone = CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=40.0)
    assert lone.owns("any-node")
    assert lone.from_module(configmap_for("edge-9"), 0.0).wake


def test_replicas_get_broker_client_ids_of_their_own() -> None:
    ids = {bus_settings("cloudhub", topics.Side.CLOUD, CloudHubSettings(replica_id=r)).connection.client_id
           for r in ("a", "b")}
    assert ids == {"edgehive-cloudhub-cloud-a", "edgehive-cloudhub-cloud-b"}
    assert CloudHubSettings().node == "cloud"
    with pytest.raises(ValueError, match="lease_duration_s"):
        CloudHubSettings(replica_id="a", lease_duration_s=1)


def test_up_qos_is_0_or_1() -> None:
    assert CloudHubSettings(up_qos=0).up_qos == 0
    with pytest.raises(ValueError, match="up_qos must be 0 or 1, not 2"):
        CloudHubSettings(up_qos=2)


def test_a_replicas_announcements_name_it_and_a_lone_cloudhubs_do_not() -> None:
    replica = CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=40.0, session_id=lambda: "s1",
                          replica="r1")
    announced_live(replica, "edge-1")
    (announce,) = replica.take("edge-1", 1.0).announce
    assert announce.envelope.body == {"session": "s1", "state": "connected", "replica": "r1"}
    assert SessionNews.parse(announce.envelope.body) == SessionNews("s1", True, "r1")
    lone = CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=40.0, session_id=lambda: "s1")
    announced_live(lone, "edge-1")
    (announce,) = lone.take("edge-1", 1.0).announce
    assert announce.envelope.body == {"session": "s1", "state": "connected"}  # as before replicas existed


def test_each_replica_has_a_status_topic_and_a_will_of_its_own() -> None:
    wills = {r: bus_settings("cloudhub", topics.Side.CLOUD, CloudHubSettings(replica_id=r)).connection.will
             for r in ("a", "b")}
    assert {r: will.topic for r, will in wills.items() if will} == {"a": "edgehive/status/cloudhub/a",
                                                                    "b": "edgehive/status/cloudhub/b"}
    will = wills["a"]
    assert will is not None
    assert ComponentStatus.parse(decode(will.payload).body).replica == "a"
    lone = bus_settings("cloudhub", topics.Side.CLOUD, CloudHubSettings()).connection.will
    assert lone is not None
    assert lone.topic == "edgehive/status/cloudhub"
    for topic in ("edgehive/status/cloudhub", "edgehive/status/cloudhub/a"):
        assert topics.matches(topics.all_status(), topic)
    assert topics.parse_status("edgehive/status/cloudhub/a") == ("cloudhub", "a")
    assert topics.parse_status("edgehive/status/cloudhub") == ("cloudhub", None)
    assert topics.parse_status("edgehive/link/edge-1/up") is None
    with pytest.raises(ValueError, match="replica_id"):
        CloudHubSettings(replica_id="hub.1")  # it names a topic: no NATS separator, no wildcard


def edge_node(name: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {"node-role.kubernetes.io/edge": ""}}}


def test_membership_hands_the_nodes_to_the_assignment_only_after_they_changed() -> None:
    """The loop looks twice a second; at 100,000 nodes building their union and comparing it with the last one
    cost 12-24 ms a pass, so it is built only after a Node or a hello came or went."""
    membership = Membership(cast(Kube, object()), "a", 10, lambda _handover: None)
    packed = cast(Packed, None)
    assert membership.nodes_if_changed() == set()  # the first pass always counts
    assert membership.nodes_if_changed() is None
    membership._on_node("node", "ADDED", edge_node("edge-1"), packed)
    membership.heard("edge-2")
    assert membership.nodes_if_changed() == {"edge-1", "edge-2"}
    membership._on_node("node", "MODIFIED", edge_node("edge-1"), packed)  # a status update: same nodes
    membership.heard("edge-2")
    membership.heard("edge-1")  # known already as a Node, now heard too: the union gains nothing, yet it is a change
    assert membership.nodes_if_changed() == {"edge-1", "edge-2"}
    assert membership.nodes_if_changed() is None
    membership._on_node("node", "DELETED", edge_node("edge-1"), packed)
    assert membership.nodes_if_changed() == {"edge-1", "edge-2"}, "still heard"
    membership.heard("edge-1", present=False)
    assert membership.nodes_if_changed() == {"edge-2"}


def test_an_assignment_given_no_nodes_keeps_its_own_and_recounts_only_for_new_members() -> None:
    a = NodeAssignment("a")
    first = a.update(nodes=NODES, members={"a", "b"})
    kept = a.nodes
    assert not a.update(members={"a", "b"})
    assert a.nodes is kept, "not copied when the caller says the nodes did not change"
    assert a.update(members={"a"}).gained == frozenset(NODES) - first.gained


def keepalive_from(node: str) -> Envelope:
    return Envelope(node=node, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE, body={})


def test_a_node_its_last_owner_announced_gone_is_announced_only_once_heard(router: CloudRouter) -> None:
    """Announced connected at once, the controllers would list the store of a node that is not on the link."""
    router.replica = "r2"
    router.heard_news("edge-1", SessionNews("s-old", False, "r1"))  # r1, its owner, said it was gone
    router.heard_news("edge-2", SessionNews("s-old2", True, "r1"))  # r1 died with edge-2 on the link
    router.heard_news("edge-3", SessionNews("s-old3", False, "r1"))
    router.heard_news("edge-3", SessionNews("s-old3b", True, "r1"))  # it came back before the handover
    for node in ("edge-1", "edge-2", "edge-3"):
        router.gain(node)
    quiet = router.subscribed(topics.link_up("edge-1"), 1.0)
    assert quiet.announce == [], "not announced: it stays as r1 left it, disconnected"
    assert router.owns("edge-1")
    assert router.from_module(configmap_for("edge-1"), 1.1).wake, "its objects queue for when it is heard"
    assert router.due(1.2) == []
    for node in ("edge-2", "edge-3"):
        (announce,) = router.subscribed(topics.link_up(node), 1.0).announce
        assert SessionNews.parse(announce.envelope.body).connected, f"{node}: announced at once, as before"
    heard = router.from_node(keepalive_from("edge-1"), topics.link_up("edge-1"), 2.0)
    (announce,) = heard.announce
    assert SessionNews.parse(announce.envelope.body) == SessionNews("s3", True, "r2")
    assert [node for node, _ in router.due(2.1)] == ["edge-1"]


def test_a_node_no_cloudhub_ever_announced_is_announced_only_once_heard(router: CloudRouter) -> None:
    """Replicas that start before the fleet's nodes first connect: no session to take over, and announcing one
    would have the controllers list each such node's store until the keepalive timeout."""
    router.replica = "r2"
    router.gain("edge-1")
    assert router.subscribed(topics.link_up("edge-1"), 1.0).announce == []
    assert router.owns("edge-1")
    assert router.expire(60.0).announce == [], "nothing to announce gone either"
    (announce,) = router.from_node(keepalive_from("edge-1"), topics.link_up("edge-1"), 61.0).announce
    assert SessionNews.parse(announce.envelope.body) == SessionNews("s1", True, "r2")
    # this replica's own earlier announcement (before a restart) counts as one: taken at once next time
    router.drop("edge-1")
    router.heard_news("edge-1", SessionNews("s1", True, "r2"))
    router.gain("edge-1")
    (again,) = router.subscribed(topics.link_up("edge-1"), 62.0).announce
    assert SessionNews.parse(again.envelope.body).connected


def test_a_replica_ignores_its_own_announcements_and_a_lone_cloudhubs(router: CloudRouter) -> None:
    router.replica = "r2"
    router.heard_news("edge-1", SessionNews("s1", False, "r2"))
    router.heard_news("edge-2", SessionNews("s2", False))
    assert router.gone_elsewhere == set()
