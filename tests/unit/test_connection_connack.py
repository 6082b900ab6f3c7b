"""A broker that takes the connection but never answers CONNECT is left after ``connack_timeout`` and tried
again, instead of holding the link down a whole keepalive per attempt (paho's own limit). The broker here is a
real listening socket on loopback that reads and says nothing."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from tests.fixtures.processes import wait_until


class SilentBroker:
    """Accepts connections, reads what comes, answers nothing; counts the connections it was given."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)  # kept open: silent, not closed

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    yield broker
    broker.close()


def test_a_broker_that_never_answers_connect_is_left_and_tried_again(silent: SilentBroker) -> None:
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
