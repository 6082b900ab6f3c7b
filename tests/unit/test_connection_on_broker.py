"""``Connection.on_broker``: a connection the broker has accepted counts as on the broker while its subscriptions
are being acknowledged again, for ``settle_s`` and no longer. The broker is a real listening socket on loopback
that answers CONNECT with a CONNACK and never answers a SUBSCRIBE (a NATS member busy with JetStream right after
an election does the latter for seconds)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from tests.fixtures.processes import wait_until

CONNACK = bytes([0x20, 0x02, 0x00, 0x00])  # MQTT 3.1.1: accepted, no session present


class MuteOnSubscribe:
    """Accepts connections, answers the CONNECT, then only reads."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.subscribes = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        answered = False
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            if not answered:  # the first bytes are the CONNECT
                conn.sendall(CONNACK)
                answered = True
            self.subscribes += data.count(b"on-broker/")  # each SUBSCRIBE names one such filter

    def close(self) -> None:
        """Stop taking connections and drop the ones taken (shut down: a bare close() from another thread
        leaves the reading thread's recv, and so the connection, open)."""
        for sock in (self.sock, *self._open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()


@pytest.fixture
def mute() -> Iterator[MuteOnSubscribe]:
    broker = MuteOnSubscribe()
    yield broker
    broker.close()


def test_accepted_with_subscriptions_pending_counts_as_on_the_broker_for_settle_s_only(mute: MuteOnSubscribe) -> None:
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", mute.port), client_id="on-broker",
                                         backoff=Backoff(initial=0.05, maximum=0.1)), name="on-broker")
    settle_s = 1.5
    assert not conn.on_broker(settle_s)  # not started: off
    for i in range(3):
        conn.subscribe(f"on-broker/{i}")
    conn.start()
    try:
        wait_until(lambda: mute.subscribes >= 3, timeout=10, what="the three SUBSCRIBEs sent after the CONNACK")
        accepted = time.monotonic()
        assert not conn.connected  # no SUBACK: not connected in the full sense
        assert conn.on_broker(settle_s)  # but on the broker, making its subscriptions again
        wait_until(lambda: not conn.on_broker(settle_s), timeout=10, what="on_broker turning false after settle_s")
        assert time.monotonic() - accepted >= settle_s - 0.5  # not before (the CONNACK came before the count)
        assert conn.on_broker(settle_s=60)  # a longer allowance still counts it on
        mute.close()  # the connection lost (and no new one taken): off at once, whatever the allowance
        wait_until(lambda: not conn.on_broker(settle_s=60), timeout=10, what="on_broker false once the link dropped")
    finally:
        conn.close(0.1)
