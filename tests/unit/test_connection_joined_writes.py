"""The network thread writes the PUBACKs and QoS 1 PUBLISHes queued at the head of paho's queue in one system call
(runtime/connection.py's _Client._write_joined), and queues its own packets without waking itself; a socket that
takes only part of the bytes leaves the rest queued, at the right place."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl


class Socket:
    """Takes at most ``room`` bytes per send (None: all of them)."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        taken = data if self.room is None else data[:self.room]
        self.sends.append(bytes(taken))
        return len(taken)

    def close(self) -> None:
        pass


def _client(sock: Socket) -> Any:
    conn = Connection(ConnectionSettings(url=BrokerUrl("127.0.0.1", 1), client_id="joined"), name="joined")
    client: Any = conn._client
    client._sock = sock
    client.network_thread = threading.get_ident()  # this test's thread queues as the network thread does
    return client


def _queue(client: Any, kind: int, packet: bytes, qos: int = 1) -> None:
    info = mqtt.MQTTMessageInfo(1)
    assert client._packet_queue(kind, packet, 1, qos, info) == MQTTErrorCode.MQTT_ERR_SUCCESS


def test_pubacks_and_qos1_publishes_go_in_one_write_then_paho_writes_the_rest() -> None:
    sock = Socket()
    client = _client(sock)
    _queue(client, mqtt.PUBACK, b"A1")
    _queue(client, mqtt.PUBACK, b"A2")
    _queue(client, mqtt.PUBLISH | 0x02, b"P1")
    _queue(client, mqtt.PUBLISH, b"Q0", qos=0)  # QoS 0: paho completes it once written, so paho writes it
    assert client._packet_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert sock.sends == [b"A1A2P1", b"Q0"]
    assert not client._out_packet


def test_the_network_thread_does_not_wake_itself() -> None:
    client = _client(Socket())
    woken: list[bytes] = []

    class Pair(Socket):
        def send(self, data: bytes) -> int:
            woken.append(data)
            return len(data)

    client._sockpairW = Pair()
    _queue(client, mqtt.PUBACK, b"A1")
    assert woken == []
    assert client.want_write()  # its loop writes what is queued on its next pass


def test_a_partial_write_leaves_the_rest_in_order() -> None:
    sock = Socket(room=3)
    client = _client(sock)
    for packet in (b"A1", b"A2", b"A3"):
        _queue(client, mqtt.PUBACK, packet)
    client._packet_write()
    assert sock.sends == [b"A1A"]
    assert [p["packet"][p["pos"]:] for p in client._out_packet] == [b"2", b"A3"]
    sock.room = None
    client._packet_write()
    assert sock.sends[1:] == [b"2A3"]
    assert not client._out_packet


def test_a_lone_packet_is_paho_s_to_write() -> None:
    sock = Socket()
    client = _client(sock)
    _queue(client, mqtt.PUBACK, b"A1")
    assert client._write_joined() is None
    client._packet_write()
    assert sock.sends == [b"A1"]


class _AppendedMeanwhile(collections.deque[Any]):
    """A queue another thread appends to (paho's _packet_queue, without the write lock) while the network
    thread looks over its head."""

    def __init__(self, items: list[Any], extra: Any) -> None:
        super().__init__(items)
        self.extra: Any = extra

    def _meddle(self) -> None:
        if self.extra is not None:
            extra, self.extra = self.extra, None
            self.append(extra)

    def __iter__(self) -> Iterator[Any]:
        items = super().__iter__()
        first = next(items)
        self._meddle()
        yield first
        yield from items

    def __getitem__(self, index: Any) -> Any:
        if index == 1:
            self._meddle()
        return super().__getitem__(index)


def test_an_append_by_another_thread_while_the_head_is_looked_over_is_written_after_it() -> None:
    sock = Socket()
    client = _client(sock)
    for packet in (b"A1", b"A2"):
        _queue(client, mqtt.PUBACK, packet)
    late = dict(client._out_packet[0], packet=b"P9", to_process=2)
    client._out_packet = _AppendedMeanwhile(list(client._out_packet), late)
    client._packet_write()
    assert b"".join(sock.sends) == b"A1A2P9"
    assert not client._out_packet
