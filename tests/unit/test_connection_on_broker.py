"""``Connection.on_broker``: a connection the broker has accepted counts as on the broker while its subscriptions
are being acknowledged again, for ``settle_s`` and no longer. The broker is tests/support/mutebroker.py: it answers
CONNECT with a CONNACK and never answers a SUBSCRIBE (a NATS member busy with JetStream right after an election
does the latter for seconds)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from runtime.backoff import Backoff
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl
from tests.fixtures.processes import wait_until
from tests.support.mutebroker import MuteBroker


@pytest.fixture
def mute() -> Iterator[MuteBroker]:
    broker = MuteBroker(connack=True, marker=b"on-broker/")  # each SUBSCRIBE names one such filter
    yield broker
    broker.close()


def test_accepted_with_subscriptions_pending_counts_as_on_the_broker_for_settle_s_only(mute: MuteBroker) -> None:
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", mute.port), client_id="on-broker",
                                         backoff=Backoff(initial=0.05, maximum=0.1)), name="on-broker")
    settle_s = 1.5
    assert not conn.on_broker(settle_s)  # not started: off
    for i in range(3):
        conn.subscribe(f"on-broker/{i}")
    conn.start()
    try:
        wait_until(lambda: mute.marked >= 3, timeout=10, what="the three SUBSCRIBEs sent after the CONNACK")
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


def test_a_subscription_asked_for_while_the_connects_own_are_unacknowledged_goes_out_at_once(
        mute: MuteBroker) -> None:
    """A CloudHub replica that gets its nodes back right after a reconnect subscribes to them while the
    SUBACKs of its other subscriptions are still coming: each such SUBSCRIBE must go out then, not wait for the
    next connect (found in the HA bench: 301 nodes never announced after a NATS member's death)."""
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", mute.port), client_id="window",
                                         backoff=Backoff(initial=0.05, maximum=0.1)), name="window")
    conn.subscribe("on-broker/before")
    conn.start()
    try:
        wait_until(lambda: mute.marked >= 1, timeout=10, what="the connect's own SUBSCRIBE")
        assert not conn.connected  # its SUBACK never comes
        conn.subscribe("on-broker/after")
        wait_until(lambda: mute.marked >= 2, timeout=10, what="the SUBSCRIBE asked for meanwhile")
        assert mute.accepted == 1, "on the same connection"
    finally:
        conn.close(0.1)
