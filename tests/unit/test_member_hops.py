"""A connection with a member list tries every member in turn before its backoff grows.

Three loopback ports with nothing listening refuse at once, so one round is three quick failures; the
backoff (made long here) is taken only after the third.
"""

from __future__ import annotations

import socket

from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from tests.fixtures.processes import wait_until


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_backoff_grows_once_per_round_of_members() -> None:
    urls = [BrokerUrl("127.0.0.1", _closed_port()) for _ in range(3)]
    backoff = Backoff(initial=60.0, jitter=0.0)
    conn = Connection(ConnectionSettings(url=urls[0], alternates=tuple(urls[1:]), client_id="hops",
                                         backoff=backoff), name="hops").start()
    try:
        wait_until(lambda: conn.counters.get("connect_failures") >= 3, timeout=10, what="a round of members")
        assert backoff.attempts == 1  # the two hops inside the round left it alone
        assert conn.counters.get("member_switches") == 2
        assert conn.url == urls[2]  # the last of the round failed; the backoff is waited out before the first again
    finally:
        conn.close(drain_timeout=0)
