"""EdgeHub with ``--bridge native``: it follows the raw ``1``/``0`` on the node's hello topic (and not the Python
bridge's envelope), and says hello once more through the edge broker's hello-repeat topic while the link it came
up on is still up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.edgehub.hub import EdgeHub, EdgeHubSettings
from runtime.bus import Bus, BusSettings
from runtime.connsettings import ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from schemas.envelope import Op, Send

NODE = "edge-1"


class Published:
    """What the hub hands its (never started) connection."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes, bool]] = []
        self.arrived = threading.Condition()

    def publish(self, topic: str, payload: bytes, **kwargs: Any) -> None:
        with self.arrived:
            self.items.append((topic, payload, bool(kwargs.get("retain"))))
            self.arrived.notify_all()

    def wait_for(self, item: tuple[str, bytes, bool], timeout: float = 10) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: item in self.items, timeout=timeout), self.items


@pytest.fixture
def published() -> Published:
    return Published()


def _hub(tmp_path: Path, published: Published, monkeypatch: pytest.MonkeyPatch, bridge: str) -> EdgeHub:
    bus = Bus(BusSettings(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="edgehub"), module="edgehub",
                          side=topics.Side.EDGE, node=NODE))
    monkeypatch.setattr(bus.connection, "publish", published.publish)
    hub = EdgeHub(EdgeHubSettings(node=NODE, outbox=str(tmp_path / "outbox.db"), bridge=bridge), bus)
    hub.hello_repeat_s = 0.05
    return hub


@pytest.fixture
def native(tmp_path: Path, published: Published, monkeypatch: pytest.MonkeyPatch) -> Iterator[EdgeHub]:
    hub = _hub(tmp_path, published, monkeypatch, "native")
    yield hub
    hub._stop.set()
    hub.outbox.close()


@pytest.mark.parametrize(("bridge", "follows", "ignores"), [
    ("native", topics.link_hello(NODE), topics.link_state(NODE)),
    ("python", topics.link_state(NODE), topics.link_hello(NODE)),
])
def test_each_mode_follows_its_own_link_topic_alone(tmp_path: Path, published: Published,
                                                    monkeypatch: pytest.MonkeyPatch, bridge: str, follows: str,
                                                    ignores: str) -> None:
    hub = _hub(tmp_path, published, monkeypatch, bridge)
    subscribed: list[str] = []
    monkeypatch.setattr(hub.bus.connection, "subscribe", lambda topic, *a, **k: subscribed.append(topic))
    hub.start()
    try:
        assert follows in subscribed
        assert ignores not in subscribed
        raw = [f for f, _ in hub.bus._raw_handlers]
        assert (follows in raw) == (bridge == "native")
    finally:
        hub.close()


def test_an_unknown_bridge_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="bridge must be one of python, native, not 'nats'"):
        EdgeHubSettings(node=NODE, bridge="nats")


def test_link_up_says_hello_and_repeats_it_retained_through_the_edge_broker(native: EdgeHub,
                                                                           published: Published) -> None:
    sends = list(native.on_native_link(topics.link_hello(NODE), b"1") or ())
    assert native.router.link_up
    (hello,) = sends
    assert isinstance(hello, Send)
    assert (hello.topic, hello.envelope.op) == (topics.link_up(NODE), Op.KEEPALIVE)
    published.wait_for((topics.hello_repeat(), topics.NATIVE_UP, True))
    announced = [(t, r) for t, _, r in published.items if t == topics.cloud_link()]
    assert announced == [(topics.cloud_link(), True)]


def test_no_repeat_for_a_link_that_went_down_since(native: EdgeHub, published: Published) -> None:
    native.hello_repeat_s = 3600.0  # the timers wait; the test calls the repeat itself
    native.on_native_link(topics.link_hello(NODE), b"1")
    first = native._links
    native.on_native_link(topics.link_hello(NODE), b"0")
    assert not native.router.link_up
    native._repeat_hello(first)
    native.on_native_link(topics.link_hello(NODE), b"1")
    native._repeat_hello(first)  # an older link's timer, with the link up again
    assert [p for p in published.items if p[0] == topics.hello_repeat()] == []
    native._repeat_hello(native._links)
    assert [p for p in published.items if p[0] == topics.hello_repeat()] == [
        (topics.hello_repeat(), topics.NATIVE_UP, True)]


def test_junk_on_the_hello_topic_is_refused_and_counted(native: EdgeHub, published: Published) -> None:
    assert list(native.on_native_link(topics.link_hello(NODE), b"up") or ()) == []
    assert not native.router.link_up
    assert native.bus.counters.get("refused_link_state") == 1
    assert published.items == []
