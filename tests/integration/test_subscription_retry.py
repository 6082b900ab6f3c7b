"""A subscription the broker refuses is asked for again, on a real NATS member: NATS refuses a QoS 1
subscription both for a permission and when it cannot create its JetStream consumer in time (a loaded or
re-electing cluster), and a connection that never asked again left a CloudHub replica deaf to a node."""

from __future__ import annotations

from runtime.connection import SUBSCRIBE_RETRY_S, Connection, ConnectionSettings
from runtime.url import BrokerUrl
from schemas import topics
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.processes import wait_until

USERS = {"cloud": "cloud-pw", "node-a": "a-pw", "node-b": "b-pw"}


def test_a_refused_subscription_is_asked_for_again_while_still_wanted(edgehive_broker: BrokerFactory) -> None:
    broker = edgehive_broker("nats", users=USERS)
    conn = Connection(ConnectionSettings(url=BrokerUrl.parse(broker.url("node-a", USERS["node-a"])),
                                         client_id="retry-a"), name="retry-a")
    conn.subscribe(topics.link_down("node-a"))
    conn.subscribe(topics.link_down("node-b"))  # another node's: refused by the ACL, every time
    conn.start()
    try:
        assert conn.wait_connected(20)
        wait_until(lambda: conn.counters.get("subscribe_refused") >= 3, timeout=10 * SUBSCRIBE_RETRY_S,
                   what="the refused subscription asked for three times")
        assert conn.connected  # a refusal does not cost the connection
    finally:
        conn.close(drain_timeout=0)
