"""A subscription's SUBACK reaches the listeners (CloudHub takes a node it gained only then), without a network:
paho's callback is driven directly, as its network thread would."""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from runtime.connection import SUBSCRIBE_PACK, Connection, ConnectionSettings, _packs
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
    conn._sub_mids.update({1: ("a/up",), 2: ("b/up",)})
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
    assert conn._early_subacks == {7: [GRANTED]}


def test_a_failing_listener_does_not_stop_the_others() -> None:
    heard: list[str] = []
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="suback"), name="suback")

    def boom(_topic: str) -> None:
        raise RuntimeError("listener bug")

    conn.on_subscribed(boom)
    conn.on_subscribed(heard.append)
    conn._sub_mids[3] = ("c/up",)
    conn._on_subscribe(None, None, 3, [GRANTED], None)
    assert heard == ["c/up"]



def test_each_filter_of_a_packet_has_its_own_outcome() -> None:
    """One SUBACK answers a packet of filters, a code per filter in order: the granted ones are reported, the
    refused one is asked for again alone, and a filter the broker gave no code for counts as refused."""
    heard: list[str] = []
    conn = _connection(heard)
    conn._sub_mids[4] = ("a/up", "b/up", "c/up", "d/up")
    conn._on_subscribe(None, None, 4, [GRANTED, REFUSED, GRANTED], None)
    assert heard == ["a/up", "c/up"]
    assert set(conn._sub_retries) == {"b/up", "d/up"}
    assert conn.counters.get("subscribe_refused") == 2


def test_an_early_suback_of_a_packet_keeps_each_filters_outcome() -> None:
    heard: list[str] = []
    conn = _connection(heard)
    conn._on_subscribe(None, None, 9, [REFUSED, GRANTED], None)
    assert conn._early_subacks == {9: [REFUSED, GRANTED]}
    conn._answered(("x/up", "y/up"), conn._early_subacks.pop(9))
    assert heard == ["y/up"]
    assert set(conn._sub_retries) == {"x/up"}


def test_filters_go_a_pack_at_a_time_in_their_order() -> None:
    items = [f"n{i}" for i in range(2 * SUBSCRIBE_PACK + 1)]
    packs = list(_packs(items))
    assert [len(p) for p in packs] == [SUBSCRIBE_PACK, SUBSCRIBE_PACK, 1]
    assert [x for p in packs for x in p] == items
    assert list(_packs([])) == []
