"""The connection's publish window and reconnects, on a real broker that goes away and comes back."""

from __future__ import annotations

import pytest

from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings, Incoming, PublishTimeout
from runtime.url import BrokerUrl
from tests.fixtures.brokers import BrokerFactory
from tests.fixtures.processes import wait_until


def test_window_blocks_while_the_broker_is_down_and_drains_after(edgehive_broker: BrokerFactory) -> None:
    # mosquitto as configured by edgehive keeps sessions on disk across a restart, so the
    # subscriber's session outlives the broker and nothing depends on who reconnects first.
    broker = edgehive_broker("mosquitto")
    url = BrokerUrl.parse(broker.url())
    received: list[bytes] = []

    def collect(message: Incoming) -> None:
        received.append(message.payload)
        message.ack()

    sub = Connection(ConnectionSettings(url, client_id="sub", clean_start=False,
                                        backoff=Backoff(initial=0.1, maximum=0.5)), name="sub")
    sub.subscribe("w/t")
    sub.on_message(collect)
    pub = Connection(ConnectionSettings(url, client_id="pub", window=3, backoff=Backoff(initial=0.1, maximum=0.5)),
                     name="pub")
    sub.start()
    pub.start()
    try:
        assert sub.wait_connected(10)
        assert pub.wait_connected(10)
        broker.stop()
        wait_until(lambda: not pub.connected, timeout=10, what="the publisher to notice the broker is gone")
        for i in range(3):  # fills the window; nothing is acknowledged while the broker is down
            pub.publish("w/t", f"m{i}".encode(), timeout=1)
        assert pub.inflight == 3
        with pytest.raises(PublishTimeout, match="3 publishes still unacknowledged"):
            pub.publish("w/t", b"one too many", timeout=0.3)

        broker.start()
        wait_until(lambda: sub.connected and pub.connected, timeout=20, what="both to reconnect")
        wait_until(lambda: len(received) == 3, timeout=20, what="the 3 held messages to arrive")
        assert received == [b"m0", b"m1", b"m2"]
        assert pub.drain(5)
        assert pub.counters.get("connects") == 2
    finally:
        pub.close(drain_timeout=1)
        sub.close(drain_timeout=1)


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_a_broker_that_lost_our_session_is_noticed(edgehive_broker: BrokerFactory, kind: str) -> None:
    # edgehive's amqtt keeps sessions in memory (lost by a restart); its mosquitto keeps them on disk.
    broker = edgehive_broker(kind)
    url = BrokerUrl.parse(broker.url())
    lost: list[int] = []
    conn = Connection(ConnectionSettings(url, client_id=f"keeper-{kind}", clean_start=False,
                                         backoff=Backoff(initial=0.1, maximum=0.5)), name="keeper")
    conn.on_session_lost(lambda: lost.append(1))
    conn.start()
    try:
        assert conn.wait_connected(10)
        assert not lost, "a first connection has no session to lose"
        broker.restart()
        wait_until(lambda: conn.counters.get("connects") == 2 and conn.connected, timeout=20,
                   what="the reconnect")
        assert lost == ([1] if kind == "amqtt" else [])
        assert conn.counters.get("sessions_lost") == len(lost)
    finally:
        conn.close(drain_timeout=1)
