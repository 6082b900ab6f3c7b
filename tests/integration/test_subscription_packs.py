"""Many subscriptions asked for a packet at a time (``Connection.subscribe_many``), on real brokers: each filter
is still granted, delivered and refused on its own, and they are all asked for again after a reconnect."""

from __future__ import annotations

import threading
from functools import partial

import pytest

from runtime.connection import SUBSCRIBE_PACK, SUBSCRIBE_RETRY_S, Connection, ConnectionSettings, Incoming
from runtime.url import BrokerUrl
from schemas import topics
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.processes import wait_until

USERS = {"cloud": "cloud-pw", "node-a": "a-pw", "node-b": "b-pw"}
NODES = [f"node-{i:03d}" for i in range(2 * SUBSCRIBE_PACK + 50)]


class _Heard:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.granted: list[str] = []
        self.topics: set[str] = set()

    def grant(self, topic_filter: str) -> None:
        with self.lock:
            self.granted.append(topic_filter)

    def message(self, incoming: Incoming) -> None:
        incoming.ack()
        with self.lock:
            self.topics.add(incoming.topic)


def _delivered(sender: Connection, heard: _Heard, topic: str) -> bool:
    """Publish to ``topic`` until it arrives (a subscription may be granted before the broker routes to it)."""
    sender.publish(topic, b"x", qos=0)
    with heard.lock:
        return topic in heard.topics


@pytest.mark.parametrize("kind", ["mosquitto", "nats"])
def test_every_filter_of_a_packed_subscribe_is_granted_and_delivered_then_unsubscribed(
        edgehive_broker: BrokerFactory, kind: str) -> None:
    broker = edgehive_broker(kind, users=USERS)
    url = BrokerUrl.parse(broker.url("cloud", USERS["cloud"]))
    heard = _Heard()
    conn = Connection(ConnectionSettings(url=url, client_id=f"packs-{kind}", clean_start=False), name="packs")
    conn.on_subscribed(heard.grant)
    conn.on_message(heard.message)
    sender = Connection(ConnectionSettings(url=url, client_id=f"packs-sender-{kind}"), name="sender").start()
    conn.start()
    try:
        assert conn.wait_connected(20)
        assert sender.wait_connected(20)
        wanted = [topics.link_up(node) for node in NODES]
        conn.subscribe_many([(topic, 0) for topic in wanted])
        wait_until(lambda: len(heard.granted) >= len(wanted), timeout=20, what="a SUBACK for every filter")
        assert sorted(heard.granted) == sorted(wanted)  # each once
        for topic in (wanted[0], wanted[SUBSCRIBE_PACK], wanted[-1]):  # one of each packet
            wait_until(partial(_delivered, sender, heard, topic), timeout=10, what=f"a message on {topic}")

        conn.unsubscribe_many(wanted[1:])
        assert set(conn.subscriptions()) >= {wanted[0]}
        assert not set(conn.subscriptions()) & set(wanted[1:])
        last = topics.link_up("node-after")
        conn.subscribe(last, qos=0)  # after the UNSUBSCRIBEs, handled in order
        wait_until(lambda: _delivered(sender, heard, last), timeout=10, what="the filter after the unsubscribe")
        with heard.lock:
            heard.topics.clear()
        sender.publish(wanted[-1], b"gone", qos=0)  # unsubscribed ones no longer do
        sender.publish(wanted[0], b"kept", qos=0)
        wait_until(lambda: wanted[0] in heard.topics, timeout=10, what="the kept filter's message")
        assert wanted[-1] not in heard.topics
    finally:
        conn.close(drain_timeout=0)
        sender.close(drain_timeout=0)


def test_in_a_packet_a_refused_filter_is_asked_for_again_and_the_others_served(
        edgehive_broker: BrokerFactory) -> None:
    """On NATS with the link ACL: node-a's own down topic and node-b's in one SUBSCRIBE. Its own is granted and
    delivered; node-b's is refused, and asked for again alone while it is still wanted."""
    broker = edgehive_broker("nats", users=USERS)
    heard = _Heard()
    conn = Connection(ConnectionSettings(url=BrokerUrl.parse(broker.url("node-a", USERS["node-a"])),
                                         client_id="packs-a"), name="packs-a")
    conn.on_subscribed(heard.grant)
    conn.on_message(heard.message)
    cloud = Connection(ConnectionSettings(url=BrokerUrl.parse(broker.url("cloud", USERS["cloud"])),
                                          client_id="packs-cloud"), name="packs-cloud").start()
    conn.start()
    try:
        assert conn.wait_connected(20)
        assert cloud.wait_connected(20)
        own, other = topics.link_down("node-a"), topics.link_down("node-b")
        conn.subscribe_many([(own, 1), (other, 1)])
        wait_until(lambda: conn.counters.get("subscribe_refused") >= 3, timeout=10 * SUBSCRIBE_RETRY_S,
                   what="the refused filter asked for three times")
        assert heard.granted == [own]
        wait_until(lambda: _delivered(cloud, heard, own), timeout=10, what="a message on node-a's own topic")
        assert conn.connected
    finally:
        conn.close(drain_timeout=0)
        cloud.close(drain_timeout=0)
