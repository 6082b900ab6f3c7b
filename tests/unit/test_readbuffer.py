"""The client socket's buffered reads (runtime/readbuffer.py), on a real socket pair."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from runtime.readbuffer import READ_SIZE, ReadBufferedSocket


@pytest.fixture
def pair() -> Iterator[tuple[ReadBufferedSocket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield ReadBufferedSocket(a), b
    a.close()
    b.close()


def test_small_reads_come_from_one_system_read_and_pending_says_what_is_held(
        pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    reader, writer = pair
    writer.sendall(b"\x30\x05hello\x30\x03abc")
    assert reader.recv(1) == b"\x30"
    assert reader.pending() == 11  # the rest is held: paho reads it without waiting in select
    writer.sendall(b"later")  # in the kernel, not held: not pending
    assert reader.recv(1) == b"\x05"
    assert reader.recv(5) == b"hello"
    assert reader.recv(1) == b"\x30"
    assert reader.recv(1) == b"\x03"
    assert reader.recv(10) == b"abc"  # fewer than asked: what is held
    assert reader.pending() == 0
    assert reader.recv(100) == b"later"


def test_nothing_to_read_raises_as_the_socket_does(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    reader, _writer = pair
    with pytest.raises(BlockingIOError):
        reader.recv(1)


def test_a_closed_peer_reads_as_empty_after_what_was_held(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    reader, writer = pair
    writer.sendall(b"xy")
    writer.close()
    assert reader.recv(1) == b"x"
    assert reader.recv(1) == b"y"
    assert reader.recv(1) == b""


def test_a_large_message_arrives_whole_over_several_reads(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    reader, writer = pair
    body = bytes(range(256)) * (3 * READ_SIZE // 256)
    writer.setblocking(True)
    got = bytearray()
    sender = threading.Thread(target=writer.sendall, args=(body,))
    sender.start()
    while len(got) < len(body):
        try:
            got += reader.recv(len(body) - len(got))
        except BlockingIOError:
            continue
    sender.join()
    assert bytes(got) == body


def test_everything_else_is_the_sockets(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    reader, _writer = pair
    assert reader.fileno() == reader.raw.fileno()
    assert reader.send(b"ok") == 2
