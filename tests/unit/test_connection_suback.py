"""A subscription's SUBACK reaches the listeners (CloudHub takes a node it gained only then), without a network:
paho's callback is driven directly, as its network thread would."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl

GRANTED = ReasonCode(PacketTypes.SUBACK, identifier=1)
REFUSED = ReasonCode(PacketTypes.SUBACK, identifier=0x80)


def _connection(heard: list[str]) -> Connection:
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="suback"), name="suback")
    conn.on_subscribed(heard.append)
    return conn


def test_a_granted_subscription_is_reported_and_a_refused_one_is_not() -> None:
    heard: list[str] = []
    conn = _connection(heard)
    conn._sub_mids.update({1: "a/up", 2: "b/up"})
    conn._on_subscribe(None, None, 1, [GRANTED], None)
    conn._on_subscribe(None, None, 2, [REFUSED], None)
    assert heard == ["a/up"]
    assert "b/up" in conn._sub_retries  # asked again later, as before


def test_a_suback_that_beats_the_registration_of_its_packet_id_is_not_lost() -> None:
    """subscribe() runs on another thread: the broker may answer before it records the packet id."""
    heard: list[str] = []
    conn = _connection(heard)
    conn._on_subscribe(None, None, 7, [GRANTED], None)
    assert heard == []
    assert conn._early_subacks == {7: True}


def test_a_failing_listener_does_not_stop_the_others() -> None:
    heard: list[str] = []
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="suback"), name="suback")

    def boom(_topic: str) -> None:
        raise RuntimeError("listener bug")

    conn.on_subscribed(boom)
    conn.on_subscribed(heard.append)
    conn._sub_mids[3] = "c/up"
    conn._on_subscribe(None, None, 3, [GRANTED], None)
    assert heard == ["c/up"]

