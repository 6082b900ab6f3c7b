"""CloudHub's ``--down-qos``: what it publishes on the nodes' down topics, both what goes straight down (queries,
answers) and what its per-node queue sends, at the QoS asked for; its ``--forward-qos``: what the nodes send, passed
on to the cloud modules; everything else at QoS 1. Driven on a fake bus."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest

from cloud.cloudhub.hub import CloudHub, CloudHubSettings, is_down
from cloud.cloudhub.routing import REPEAT_AFTER_S
from runtime.bus import Bus
from runtime.counters import Counters
from schemas import kinds, topics
from schemas.batch import Packed
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey

NODE = "edge-1"


class FakeConnection:
    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout: float | None = None) -> None:
        self.published.append((topic, qos))


class FakeBus:
    def __init__(self) -> None:
        self.counters = Counters()
        self.connection = FakeConnection()
        self.published: list[tuple[str, int, bool]] = []

    def call_soon(self, callback: Any) -> None:
        callback()

    def publish(self, topic: str, envelope: Envelope, *, retain: bool = False, timeout: float | None = None,
                qos: int = 1) -> bool:
        self.published.append((topic, qos, retain))
        return self.connected or qos == 1  # a QoS 0 message is dropped while the connection is down

    connected = True


def hub_with(down_qos: int) -> tuple[CloudHub, FakeBus]:
    bus = FakeBus()
    return CloudHub(CloudHubSettings(down_qos=down_qos), cast(Bus, bus)), bus


def query() -> Envelope:
    return Envelope(node=NODE, src="edgecontroller", group=Group.META, op=Op.QUERY,
                    res=ResourceKey("default", "pod", "p"))


@pytest.mark.parametrize("down_qos", [0, 1])
def test_what_goes_straight_down_goes_at_the_down_qos(down_qos: int) -> None:
    hub, _bus = hub_with(down_qos)
    sends = list(hub.on_module(query(), topics.inbox(topics.Side.CLOUD, "cloudhub")) or [])
    assert [(s.topic, s.qos) for s in sends] == [(topics.link_down(NODE), down_qos)]


@pytest.mark.parametrize("down_qos", [0, 1])
def test_the_queue_sends_at_the_down_qos(down_qos: int) -> None:
    hub, bus = hub_with(down_qos)
    envelope = Envelope(node=NODE, src="edgecontroller", group=Group.RESOURCE, op=Op.INSERT,
                        res=ResourceKey("default", "pod", "p"))
    assert hub._publish(NODE, Packed(envelope, b"", (envelope,)))
    assert hub._publish(NODE, Packed(envelope, envelope.encode(), (envelope,)))
    assert bus.published == [(topics.link_down(NODE), down_qos, False)]
    assert bus.connection.published == [(topics.link_down(NODE), down_qos)]


@pytest.mark.parametrize("down_qos", [0, 1])
def test_a_session_change_is_announced_retained_at_qos_0_and_its_repeat_at_qos_1(down_qos: int) -> None:
    hub, bus = hub_with(down_qos)
    hub.on_up(Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE), topics.link_up(NODE))
    assert bus.published == [(topics.node_session(NODE), 0, True)]
    bus.published.clear()
    hub._carry_out(hub.router.expire(time.monotonic() + REPEAT_AFTER_S))
    assert bus.published == [(topics.node_session(NODE), 1, True)]


def test_an_announcement_made_while_the_connection_is_down_waits_in_the_window_at_qos_1() -> None:
    hub, bus = hub_with(1)
    bus.connected = False
    hub.on_up(Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE), topics.link_up(NODE))
    assert bus.published == [(topics.node_session(NODE), 0, True), (topics.node_session(NODE), 1, True)]


def test_only_down_topics_count_as_down() -> None:
    assert is_down(topics.link_down(NODE))
    assert not is_down(topics.link_up(NODE))
    assert not is_down(topics.link_hello(NODE))
    assert not is_down(topics.inbox(topics.Side.CLOUD, "edgecontroller"))


def test_down_qos_is_0_or_1() -> None:
    with pytest.raises(ValueError, match="down_qos must be 0 or 1, not 2"):
        CloudHubSettings(down_qos=2)


def status_from(node: str) -> Envelope:
    return Envelope(node=node, src="edgehub", group=Group.RESOURCE, op=Op.UPDATE,
                    res=ResourceKey(None, kinds.NODESTATUS, node))


@pytest.mark.parametrize("forward_qos", [0, 1])
def test_a_nodes_message_and_its_answer_to_a_query_are_passed_on_at_the_forward_qos(forward_qos: int) -> None:
    bus = FakeBus()
    hub = CloudHub(CloudHubSettings(forward_qos=forward_qos), cast(Bus, bus))
    hub.on_up(Envelope(node=NODE, src="edgehub", group=Group.HUB, op=Op.KEEPALIVE), topics.link_up(NODE))
    sends = list(hub.on_up(status_from(NODE), topics.link_up(NODE)) or [])
    assert [(s.topic, s.qos) for s in sends] == [(topics.from_edge("edgecontroller"), forward_qos)]
    asked = query()
    hub.on_module(asked, topics.inbox(topics.Side.CLOUD, "cloudhub"))
    answer = asked.reply("metamanager", {"items": []})
    sends = list(hub.on_up(answer, topics.link_up(NODE)) or [])
    assert [(s.topic, s.qos) for s in sends] == [(topics.inbox(topics.Side.CLOUD, "edgecontroller"), forward_qos)]


def test_what_a_module_sends_down_is_not_at_the_forward_qos() -> None:
    hub = CloudHub(CloudHubSettings(forward_qos=0), cast(Bus, FakeBus()))
    sends = list(hub.on_module(query(), topics.inbox(topics.Side.CLOUD, "cloudhub")) or [])
    assert [(s.topic, s.qos) for s in sends] == [(topics.link_down(NODE), 1)]


def test_forward_qos_is_0_or_1() -> None:
    with pytest.raises(ValueError, match="forward_qos must be 0 or 1, not 2"):
        CloudHubSettings(forward_qos=2)
