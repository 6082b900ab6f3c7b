"""The connection's publish window and reconnects, on a real broker that goes away and comes back."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

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


def test_publishes_from_many_threads_keep_each_threads_order_while_the_connection_acks_what_it_receives(
        edgehive_broker: BrokerFactory) -> None:
    """Publishes from other threads are written by those threads when nothing is queued (runtime.connection's
    _Client), paho's network thread writes the rest and its own acks: one writer at a time, so each thread's
    QoS 1 messages arrive in its order, and the same connection's acks for what it receives go out meanwhile."""
    broker = edgehive_broker("mosquitto")
    url = BrokerUrl.parse(broker.url())
    threads, each = 4, 300
    # Some messages big enough to fill the socket's buffer: a write that does not finish leaves the rest queued,
    # and whatever comes after it must wait behind it (a second writer then would interleave the bytes).
    padding = {seq: b"." * (256 * 1024 if seq % 10 == 0 else 0) for seq in range(each)}
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    echoes: list[bytes] = []

    def collect(message: Incoming) -> None:
        thread, _, rest = message.payload.partition(b":")
        seen[int(thread)].append(int(rest.rstrip(b".")))
        message.ack()

    def echo(message: Incoming) -> None:
        echoes.append(message.payload)
        message.ack()  # from the network thread: paho's queue, beside the other threads' direct writes

    sub = Connection(ConnectionSettings(url, client_id="order-sub", clean_start=False), name="order-sub")
    sub.subscribe("order/t")
    sub.on_message(collect)
    both = Connection(ConnectionSettings(url, client_id="order-pub", window=64), name="order-pub")
    both.subscribe("order/echo")
    both.on_message(echo)
    other = Connection(ConnectionSettings(url, client_id="order-echo"), name="order-echo")
    for conn in (sub, both, other):
        conn.start()
    try:
        assert all(conn.wait_connected(10) for conn in (sub, both, other))
        # A small send buffer: the big messages' writes stop part way, as on a slow link.
        raw: Any = both._client.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)

        def publish(thread: int) -> None:
            for seq in range(each):
                both.publish("order/t", f"{thread}:{seq}".encode() + padding[seq], timeout=30)
                if seq % 4 == 0:
                    other.publish("order/echo", f"{thread}:{seq}".encode(), timeout=30)

        workers = [threading.Thread(target=publish, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        wait_until(lambda: sum(len(s) for s in seen.values()) >= threads * each, timeout=60,
                   what="every message at the subscriber")
        wait_until(lambda: len(echoes) >= threads * each // 4, timeout=60, what="every echo at the publisher")
        assert all(seen[t] == list(range(each)) for t in range(threads)), "a thread's messages arrived out of order"
        assert both.drain(10)
        assert both.counters.get("connects") == 1  # bytes of two packets interleaved would have broken the link
        assert both._client.direct_written > 0  # the direct path was taken (and is what this test orders)
    finally:
        for conn in (sub, both, other):
            conn.close(1)


def test_qos0_publishes_from_another_thread_are_written_and_completed_by_it(edgehive_broker: BrokerFactory) -> None:
    """A QoS 0 message published from a thread other than the network thread leaves from that thread (no wake of
    the network thread, no paho callback lock): it is complete, its on_acked run, when publish() returns, and
    the window's slots come back, so more messages than the window go out without the network thread's help."""
    count = 200
    with _publisher_and_counter(edgehive_broker, "qos0", qos=0) as (pub, seen):
        acked: list[int] = []
        written = pub._client.direct_written
        for seq in range(count):
            assert pub.publish("qos0/t", str(seq).encode(), qos=0, timeout=5, on_acked=partial(acked.append, seq))
            assert acked[-1] == seq  # completed by the publish itself, not later by the network thread
        assert pub._client.direct_written - written == count
        assert pub.inflight == 0
        wait_until(lambda: len(seen) >= count, timeout=30, what="every QoS 0 message at the subscriber")
        assert seen == list(range(count))


@contextlib.contextmanager
def _publisher_and_counter(edgehive_broker: BrokerFactory, name: str,
                           qos: int) -> Iterator[tuple[Connection, list[int]]]:
    """A publisher with a window of 8, and the numbers a subscriber to ``NAME/t`` has received, in order."""
    url = BrokerUrl.parse(edgehive_broker("mosquitto").url())
    seen: list[int] = []

    def collect(message: Incoming) -> None:
        seen.append(int(message.payload))
        message.ack()

    sub = Connection(ConnectionSettings(url, client_id=f"{name}-sub"), name=f"{name}-sub")
    sub.subscribe(f"{name}/t", qos=qos)
    sub.on_message(collect)
    pub = Connection(ConnectionSettings(url, client_id=f"{name}-pub", window=8), name=f"{name}-pub")
    for conn in (sub, pub):
        conn.start()
    try:
        assert all(conn.wait_connected(10) for conn in (sub, pub))
        yield pub, seen
    finally:
        for conn in (sub, pub):
            conn.close(1)


def test_publishes_in_a_cork_leave_together_in_order_and_a_full_window_lets_them_out(
        edgehive_broker: BrokerFactory) -> None:
    """QoS 1 publishes inside ``corked()`` are held back and written at once when the block ends; a QoS 0 publish
    among them goes after them; and a window that fills inside the block writes what was held (its slots come
    back only with those messages' PUBACKs) instead of waiting for ever."""
    with _publisher_and_counter(edgehive_broker, "cork", qos=1) as (pub, seen):
        client = pub._client
        writes, direct = client.cork_writes, client.direct_written
        with pub.corked():
            for seq in range(5):
                pub.publish("cork/t", str(seq).encode(), qos=1, timeout=5)
            assert (client.cork_writes, client.direct_written) == (writes, direct)  # held back
        assert (client.cork_writes, client.direct_written) == (writes + 1, direct + 1)  # one write for five
        wait_until(lambda: len(seen) >= 5, timeout=30, what="the five held-back messages")

        with pub.corked():
            pub.publish("cork/t", b"5", qos=1, timeout=5)
            pub.publish("cork/t", b"6", qos=0, timeout=5)  # goes at once, after 5
            for seq in range(7, 40):  # 33 more through a window of 8: held, written as it fills
                pub.publish("cork/t", str(seq).encode(), qos=1, timeout=5)
        assert client.cork_writes - writes >= 1 + 33 // 8
        wait_until(lambda: len(seen) >= 40, timeout=30, what="every message")
        assert seen == list(range(40))
        wait_until(lambda: pub.inflight == 0, timeout=10, what="every PUBACK")


def test_a_fault_in_the_network_loop_reconnects_instead_of_ending_its_thread(edgehive_broker: BrokerFactory) -> None:
    """An exception out of paho's loop (a fault of ours or paho's) is logged and counted, and the connection
    opened again: the thread it ended left the connection open and silent, every publish waiting for ever."""
    broker = edgehive_broker("mosquitto")
    conn = Connection(ConnectionSettings(BrokerUrl.parse(broker.url()), client_id="loop-fault",
                                         backoff=Backoff(initial=0.1, maximum=0.5)), name="loop-fault")
    conn.start()
    try:
        assert conn.wait_connected(10)
        client: Any = conn._client
        loop_misc = client.loop_misc
        faults: list[int] = []

        def faulty() -> Any:
            if not faults:
                faults.append(1)
                raise RuntimeError("injected")
            return loop_misc()

        client.loop_misc = faulty
        wait_until(lambda: conn.counters.get("loop_errors") == 1, timeout=10, what="the fault counted")
        assert conn.wait_connected(10)
        assert conn.publish("fault/t", b"after", qos=1, timeout=10)
        wait_until(lambda: conn.inflight == 0, timeout=10, what="the PUBACK after the fault")
    finally:
        conn.close(1)
