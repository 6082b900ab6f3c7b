"""MQTT 3.1.1, just what a bridge's cloud connection uses: CONNECT with a will, SUBSCRIBE, QoS 1 PUBLISH and PUBACK,
PINGREQ; and reading packets from an asyncio stream.

The scale bench's simulator plays hundreds of bridges in one process on one asyncio loop: paho would
need a network thread per client and blocks in connect, which would cost more than the cloud under test.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP = 1, 2, 3, 4, 8, 9, 12, 13
PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
MAX_REMAINING = 268_435_455


def encode_length(length: int) -> bytes:
    """MQTT's remaining length: 7 bits a byte, low first, the top bit saying another byte follows."""
    if not 0 <= length <= MAX_REMAINING:
        raise ValueError(f"an MQTT packet cannot carry {length} bytes")
    out = bytearray()
    while True:
        length, byte = divmod(length, 128)
        out.append(byte | (128 if length else 0))
        if not length:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + encode_length(len(body)) + body


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, keepalive: int, will_topic: str, will_payload: bytes, *, clean: bool,
                   username: str | None = None, password: str | None = None) -> bytes:
    """CONNECT with a QoS 1 retained will, as the bridge's cloud connection makes it (without ``username``:
    anonymous broker)."""
    flags = (0x02 if clean else 0) | 0x04 | (1 << 3) | 0x20
    credentials = b""
    if username is not None:
        flags |= 0x80
        credentials += _field(username.encode())
        if password is not None:
            flags |= 0x40
            credentials += _field(password.encode())
    header = _field(b"MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    return _packet(CONNECT << 4, header + _field(client_id.encode()) + _field(will_topic.encode()) +
                   _field(will_payload) + credentials)


def subscribe_packet(packet_id: int, topic: str, qos: int = 1) -> bytes:
    return _packet(SUBSCRIBE << 4 | 0x02, packet_id.to_bytes(2, "big") + _field(topic.encode()) + bytes([qos]))


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """A QoS 1 PUBLISH, not retained."""
    return _packet(PUBLISH << 4 | 0x02, _field(topic.encode()) + packet_id.to_bytes(2, "big") + payload)


def puback_packet(packet_id: int) -> bytes:
    return _packet(PUBACK << 4, packet_id.to_bytes(2, "big"))


@dataclass(frozen=True)
class Publish:
    topic: str
    packet_id: int | None  # None at QoS 0
    payload: bytes


def parse_publish(first: int, body: bytes) -> Publish:
    qos = (first >> 1) & 3
    length = int.from_bytes(body[:2], "big")
    topic = body[2:2 + length].decode()
    pos = 2 + length
    packet_id = None
    if qos:
        packet_id = int.from_bytes(body[pos:pos + 2], "big")
        pos += 2
    return Publish(topic, packet_id, body[pos:])


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(first byte, body) of the next packet; IncompleteReadError when the connection ends."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 127) << shift
        if not byte & 128:
            break
        shift += 7
        if shift > 21:
            raise ValueError("malformed MQTT remaining length")
    return first, (await reader.readexactly(length)) if length else b""
