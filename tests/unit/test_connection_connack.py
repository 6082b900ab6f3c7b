"""A broker that takes the connection but never answers CONNECT is left after ``connack_timeout`` and tried
again, instead of holding the link down a whole keepalive per attempt (paho's own limit). The broker here is a
real listening socket on loopback that reads and says nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from tests.fixtures.processes import wait_until
from tests.support.mutebroker import MuteBroker


@pytest.fixture
def silent() -> Iterator[MuteBroker]:
    broker = MuteBroker(connack=False)
    yield broker
    broker.close()


def test_a_broker_that_never_answers_connect_is_left_and_tried_again(silent: MuteBroker) -> None:
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", silent.port), client_id="connack",
                                         connack_timeout=0.5, backoff=Backoff(initial=0.05, maximum=0.1)),
                      name="connack")
    conn.start()
    try:
        wait_until(lambda: silent.accepted >= 3, timeout=20, what="the client giving up on the silent broker "
                                                                    "and connecting again, twice")
        assert conn.counters.get("connack_timeouts") >= 2
        assert not conn.connected
    finally:
        conn.close(0.1)
