"""Controllers sending a node's messages to the own inbox of the CloudHub replica that announced its session, and
that replica passing on what is not (or no longer) its node's, so that nothing is dropped for a stale view
(cloud/nodesync.py ``hub_inbox``, cloud/cloudhub/routing.py ``from_module``). No network: two routers, and a
NodeSync on the fake bus of test_node_resync.py."""

from __future__ import annotations

import pytest

from cloud.cloudhub.hub import CloudHubSettings
from cloud.cloudhub.routing import CloudRouter
from cloud.nodesync import CLOUDHUB, NodeSync
from runtime.component import status_envelope
from runtime.counters import Counters
from schemas import kinds, topics
from schemas.componentstatus import ComponentStatus
from schemas.envelope import Envelope, Group, Op, Send
from schemas.link import SessionNews
from schemas.resource import ResourceKey
from tests.fixtures.processes import wait_until
from tests.unit.test_node_resync import FakeBus, edge_node, event, make_sync, pod

OWN_A = "edgehive/cloud/cloudhub-a"
OWN_B = "edgehive/cloud/cloudhub-b"


def configmap(node: str, rv: str) -> Envelope:
    return Envelope(node=node, src="edgecontroller", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey("default", kinds.CONFIGMAP, "c"), rv=rv, body={})


def replica(name: str, owned: set[str]) -> CloudRouter:
    router = CloudRouter(Counters(), window_per_node=10, keepalive_timeout_s=40.0, replica=name)
    router.owned = set(owned)
    return router


def test_a_message_for_a_node_the_replica_let_go_goes_on_to_the_shared_inbox_where_the_owner_keeps_it() -> None:
    a, b = replica("a", set()), replica("b", {"edge-1"})  # edge-1 moved from a to b; the controller still says a
    update = configmap("edge-1", "7")
    passed = a.from_module(update, 1.0, forward=True)
    assert passed.sends == [Send(CLOUDHUB, update)], "passed on whole, to the inbox every replica hears"
    assert a.counters.get("forwarded") == 1
    assert not a.queues
    kept = b.from_module(passed.sends[0].envelope, 1.1)  # heard on the shared inbox
    assert kept.wake
    assert len(b.queues["edge-1"]) == 1, "the owner queued it: nothing lost"
    dropped = a.from_module(update, 1.2)  # a on the shared inbox: the owner hears it too, so a drops it
    assert dropped.sends == []
    assert a.counters.get("not_owned") == 1


def test_on_its_own_inbox_a_replica_keeps_what_is_for_its_nodes() -> None:
    a = replica("a", {"edge-1"})
    routed = a.from_module(configmap("edge-1", "7"), 1.0, forward=True)
    assert routed.sends == []
    assert routed.wake
    assert len(a.queues["edge-1"]) == 1
    assert a.counters.get("forwarded") == 0


def test_a_replica_id_too_long_for_its_inbox_is_refused() -> None:
    CloudHubSettings(replica_id="r" * 54)
    with pytest.raises(ValueError, match=r"replica_id .* too long to name an inbox"):
        CloudHubSettings(replica_id="r" * 55)


class TopicBus(FakeBus):
    """Also records the topic of every publish and listing."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: list[tuple[str, str]] = []

    def publish(self, topic: str, envelope: Envelope, *, timeout: float | None = None) -> None:
        self.topics.append((topic, envelope.node))
        super().publish(topic, envelope, timeout=timeout)

    def request(self, topic: str, envelope: Envelope, timeout: float = 10.0,
                resend_after: float | None = None) -> Envelope:
        self.topics.append((topic, envelope.node))
        return super().request(topic, envelope, timeout, resend_after)


def announce(sync: NodeSync, node: str, session: str, hub: str | None) -> None:
    news = SessionNews(session, True, hub)
    sync.on_session(Envelope(node=node, src="cloudhub", group=Group.HUB, op=news.op, body=news.as_body()), "")


def hub_status(sync: NodeSync, name: str, state: str) -> None:
    status = ComponentStatus(state, 1, replica=name)
    sync.on_hub_status(status_envelope("cloudhub", f"cloud-{name}", status), topics.status("cloudhub", name))


def test_a_controller_sends_to_the_announcing_replica_only_while_its_status_says_up() -> None:
    bus = TopicBus()
    sync = make_sync(bus)
    try:
        assert sync.hub_inbox("edge-1") == CLOUDHUB, "not announced: the shared inbox"
        announce(sync, "edge-1", "s1", "a")
        assert sync.hub_inbox("edge-1") == CLOUDHUB, "a's status not heard yet"
        hub_status(sync, "a", "up")
        assert sync.hub_inbox("edge-1") == OWN_A
        hub_status(sync, "b", "up")
        announce(sync, "edge-1", "s2", "b")  # b took it
        assert sync.hub_inbox("edge-1") == OWN_B
        hub_status(sync, "b", "down")  # b's will: dead, or off the broker
        assert sync.hub_inbox("edge-1") == CLOUDHUB
        announce(sync, "edge-2", "s3", None)  # a lone CloudHub (or one of the previous version)
        assert sync.hub_inbox("edge-2") == CLOUDHUB
        sync.on_hub_status(status_envelope("cloudhub", "cloud", ComponentStatus("up", 1)), topics.status("cloudhub"))
        assert sync.hub_inbox("edge-2") == CLOUDHUB
    finally:
        sync.close()


def test_objects_listings_and_answers_for_a_node_go_to_its_replicas_inbox() -> None:
    bus = TopicBus()
    sync = make_sync(bus)
    try:
        hub_status(sync, "a", "up")
        event(sync, kinds.NODE, "ADDED", edge_node("edge-1"))
        # announced before the pod's event: one reconciled before it would go, rightly, to the shared inbox
        announce(sync, "edge-1", "s1", "a")
        event(sync, kinds.POD, "ADDED", pod("web", "edge-1", "5"))
        wait_until(lambda: bus.holds("edge-1", ResourceKey("ns", kinds.POD, "web")), timeout=10, what="web sent")
        assert {topic for topic, node in bus.topics if node == "edge-1"} == {OWN_A}, "listings and objects"
        question = Envelope(node="edge-1", src="edged", group=Group.RESOURCE, op=Op.QUERY,
                            res=ResourceKey("ns", kinds.POD, "web"))
        assert sync.reply(question.reply("edgecontroller", {})).topic == OWN_A
    finally:
        sync.close()
