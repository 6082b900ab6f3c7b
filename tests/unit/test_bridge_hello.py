"""The bridge's retained hello, published when the cloud connection comes up and once more HELLO_REPEAT_S later
(broker/bridge.py says why), but never for a connection that has since gone."""

from __future__ import annotations

import pytest

from broker.bridge import Bridge, BridgeSettings
from runtime.connection import Connection
from runtime.url import BrokerUrl
from schemas import topics

CLOUD = BrokerUrl.parse("mqtt://n1:pw@127.0.0.1:1")
EDGE = BrokerUrl.parse("mqtt://127.0.0.1:2")


def hellos(bridge: Bridge) -> int:
    found = 0
    while not bridge._up.empty():
        item = bridge._up.get_nowait()
        assert item is not None
        found += item.topic == topics.link_hello("n1") and item.retain
    return found


@pytest.fixture
def bridge(monkeypatch: pytest.MonkeyPatch) -> Bridge:
    monkeypatch.setattr(Connection, "connected", property(lambda _self: True))
    return Bridge(BridgeSettings(node="n1", cloud=CLOUD, edge=EDGE))  # not started: no network


def test_the_hello_goes_when_the_cloud_connection_comes_up_and_again_for_that_connection(bridge: Bridge) -> None:
    bridge._cloud_changed(True)
    assert hellos(bridge) == 1
    bridge._hello_again(bridge._cloud_generation)
    assert hellos(bridge) == 1


def test_no_repeat_for_a_connection_that_went_since(bridge: Bridge) -> None:
    bridge._cloud_changed(True)
    first = bridge._cloud_generation
    bridge._cloud_changed(False)
    bridge._cloud_changed(True)
    assert hellos(bridge) == 2  # one per connection
    bridge._hello_again(first)
    assert hellos(bridge) == 0
