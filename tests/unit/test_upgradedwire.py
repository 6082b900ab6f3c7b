"""The driving loop of an upgraded connection: one owner of the socket, other threads' steps written in order
and waited for, reading paused while asked, and the end on the client's close or ``finish``."""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Sequence

from cloud.stream.upgradedwire import UpgradedWire


class EchoSession:
    """Sans-IO stand-in: what comes in is an event; what steps put in ``out`` goes out."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.lost = False

    def receive_data(self, data: bytes) -> Sequence[bytes]:
        return [data]

    def connection_lost(self) -> Sequence[bytes]:
        self.lost = True
        return []

    def data_to_send(self) -> bytes:
        out = bytes(self.out)
        self.out.clear()
        return out


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        assert chunk
        got += chunk
    return got


def test_steps_from_other_threads_are_written_in_order_and_the_client_is_read() -> None:
    server, client = socket.socketpair()
    client.settimeout(10)
    session = EchoSession()
    wire = UpgradedWire(server, session)
    seen: list[object] = []
    owner = threading.Thread(target=wire.run, args=(list, seen.append))
    owner.start()
    for n in range(50):
        assert wire.step(functools.partial(session.out.extend, b"%03d" % n))  # returns once written
    assert _read_exactly(client, 150) == b"".join(b"%03d" % n for n in range(50))
    client.sendall(b"hello")
    client.shutdown(socket.SHUT_WR)
    owner.join(timeout=10)
    assert not owner.is_alive()
    assert b"".join(item for item in seen if isinstance(item, bytes)) == b"hello"
    assert session.lost
    assert not wire.step(lambda: None)  # the connection is over: a pump stops
    server.close()
    client.close()


def test_finish_writes_what_is_left_and_ends_while_the_client_is_silent() -> None:
    server, client = socket.socketpair()
    client.settimeout(10)
    session = EchoSession()
    wire = UpgradedWire(server, session)
    owner = threading.Thread(target=wire.run, args=(list, lambda action: None))
    owner.start()
    with wire.lock:
        session.out.extend(b"goodbye")
    wire.finish()
    owner.join(timeout=10)
    assert not owner.is_alive()
    assert _read_exactly(client, 7) == b"goodbye"
    server.close()
    client.close()


def test_a_paused_wire_does_not_read_the_client_until_resumed() -> None:
    server, client = socket.socketpair()
    session = EchoSession()
    wire = UpgradedWire(server, session)
    paused = threading.Event()
    paused.set()
    seen: list[object] = []
    arrived = threading.Event()

    def act(action: object) -> None:
        seen.append(action)
        arrived.set()

    owner = threading.Thread(target=wire.run, args=(list, act, paused.is_set))
    owner.start()
    client.sendall(b"held")
    assert not arrived.wait(0.5)  # held back while paused (the kernel keeps the bytes)
    paused.clear()
    wire.step(lambda: None)  # what a forwarder does once the node took its stdin: wakes the owner
    assert arrived.wait(10)
    assert seen == [b"held"]
    client.close()
    owner.join(timeout=10)
    server.close()
