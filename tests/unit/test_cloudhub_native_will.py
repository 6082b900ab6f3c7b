"""A native (mosquitto) bridge's hello and will on CloudHub, without a network: its ``1`` at connect and its will,
a retained ``0``, both on the node's hello topic (topics.link_hello), beside the Python bridge's envelopes.
Routing (``link_lost``) takes times in and gives announcements out; the hub's ``on_hello`` is driven on a fake bus."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import Any, cast

import pytest

from cloud.cloudhub.hub import CloudHub, CloudHubSettings
from cloud.cloudhub.routing import CloudRouter, Routed
from runtime.bus import Bus
from runtime.counters import Counters
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.link import SessionNews

NODE = "edge-1"
UP = topics.link_up(NODE)
HELLO = topics.link_hello(NODE)
TIMEOUT = 40.0


def make_router(owned: set[str] | None = None) -> CloudRouter:
    ids = count(1)
    router = CloudRouter(Counters(), window_per_node=2, keepalive_timeout_s=TIMEOUT,
                         session_id=lambda: f"s{next(ids)}", replica=None if owned is None else "a")
    router.owned = owned
    return router


def keepalive(node: str = NODE) -> Envelope:
    return Envelope(node=node, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE)


def news(routed: Routed) -> list[tuple[str, SessionNews]]:
    return [(send.topic, SessionNews.parse(send.envelope.body)) for send in routed.announce]


def test_the_will_of_a_connected_node_announces_it_disconnected_and_its_next_word_starts_a_new_session() -> None:
    router = make_router()
    assert news(router.from_node(keepalive(), UP, 0.0)) == [(topics.node_session(NODE), SessionNews("s1", True))]
    lost = router.link_lost(NODE, 5.0)
    assert news(lost) == [(topics.node_session(NODE), SessionNews("s1", False))]
    assert not router.sessions[NODE].connected
    assert router.report(5.0, 1000.0)["nodes"][NODE]["connected"] is False
    assert router.link_lost(NODE, 6.0) == Routed(), "a second will (redelivered retained) changes nothing"
    again = router.from_node(keepalive(), UP, 7.0)  # EdgeHub's hello keepalive once the bridge is back
    assert news(again) == [(topics.node_session(NODE), SessionNews("s2", True))]
    assert again.wake


def test_the_will_of_a_node_heard_of_nowhere_changes_nothing() -> None:
    """Also the retained ``0`` every CloudHub reads at start-up for a node whose link is down: no session yet."""
    router = make_router()
    assert router.link_lost(NODE, 0.0) == Routed()
    assert router.sessions == {}
    assert router.report(0.0, 1000.0)["nodes"] == {}
    assert news(router.from_node(keepalive(), UP, 1.0)) == [(topics.node_session(NODE), SessionNews("s1", True))]


def test_a_replica_acts_only_on_the_will_of_a_node_it_owns() -> None:
    router = make_router(owned={NODE, "edge-2"})
    router.from_node(keepalive(), UP, 0.0)
    router.from_node(keepalive("edge-2"), topics.link_up("edge-2"), 0.0)
    router.drop("edge-2")  # moved to another replica, which announces its own session
    assert router.link_lost("edge-2", 1.0) == Routed()
    assert router.link_lost("edge-9", 1.0) == Routed()  # never ours
    assert set(router.sessions) == {NODE}
    assert router.sessions[NODE].connected, "an owned node's session is not touched by another node's will"
    (announced,) = news(router.link_lost(NODE, 2.0))
    assert announced[1] == SessionNews("s1", False, "a")


def test_the_python_bridges_will_on_the_up_topic_still_ends_the_session() -> None:
    router = make_router()
    router.from_node(keepalive(), UP, 0.0)
    will = Envelope(node=NODE, src="bridge", group=Group.HUB, op=Op.DISCONNECTED,
                    body={"state": "down", "reason": "link lost"})
    assert news(router.from_node(will, UP, 1.0)) == [(topics.node_session(NODE), SessionNews("s1", False))]
    assert router.link_lost(NODE, 2.0) == Routed(), "gone already: the native will after it changes nothing"


class FakeBus:
    """What CloudHub's ``on_hello`` uses of a bus: counters, and the handler thread's queue (run at once here)."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.published: list[tuple[str, Envelope, bool]] = []

    def call_soon(self, callback: Callable[[], Any]) -> None:
        callback()

    def publish(self, topic: str, envelope: Envelope, *, retain: bool = False, timeout: float | None = None,
                qos: int = 1) -> bool:
        self.published.append((topic, envelope, retain))
        return True


class FakeMembership:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def heard(self, node: str, *, present: bool = True) -> None:
        self.calls.append((node, present))


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


def make_hub(bus: FakeBus) -> CloudHub:
    hub = CloudHub(CloudHubSettings(), cast(Bus, bus))
    ids = count(1)
    hub.router._session_id = lambda: f"s{next(ids)}"
    return hub


def session_news(bus: FakeBus) -> list[tuple[str, str, bool, bool]]:
    """(topic, session id, connected, retained) of each announcement published."""
    return [(topic, (news := SessionNews.parse(envelope.body)).session, news.connected, retain)
            for topic, envelope, retain in bus.published]


def test_a_lone_cloudhub_ends_a_session_on_a_native_will_and_ignores_the_hello_and_the_envelope(
        bus: FakeBus) -> None:
    hub = make_hub(bus)
    hub.on_up(keepalive(), UP)
    assert session_news(bus) == [(topics.node_session(NODE), "s1", True, True)]
    assert hub.on_hello(HELLO, topics.NATIVE_UP) is None
    python_hello = Envelope(node=NODE, src="bridge", group=Group.HUB, op=Op.CONNECTED,
                            body={"state": "up", "reason": "bridge connected"})  # broker/bridge.py link_state
    assert hub.on_hello(HELLO, python_hello.encode()) is None
    assert hub.on_hello(HELLO, b"") is None  # a cleared hello
    assert hub.on_hello(HELLO, b"00") is None  # only exactly "0" is the will
    assert hub.router.sessions[NODE].connected
    assert len(bus.published) == 1
    assert hub.on_hello(HELLO, topics.NATIVE_DOWN) == []
    assert session_news(bus)[1:] == [(topics.node_session(NODE), "s1", False, True)]
    assert hub.on_hello(f"{topics.LINK}/NOT_A_NODE/hello", topics.NATIVE_DOWN) is None
    assert len(bus.published) == 2


def test_a_replica_keeps_a_node_whose_link_is_lost_present(bus: FakeBus) -> None:
    """The membership's view is whether the node exists, not whether its link is up: a native will leaves it
    present, as a Python bridge that went away leaves its envelope hello."""
    hub = make_hub(bus)
    membership = FakeMembership()
    hub.membership = cast(Any, membership)
    hub.on_hello(HELLO, topics.NATIVE_UP)
    hub.on_hello(HELLO, topics.NATIVE_DOWN)
    hub.on_hello(HELLO, b"")
    assert membership.calls == [(NODE, True), (NODE, True), (NODE, False)]
