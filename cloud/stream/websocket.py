"""A sans-IO WebSocket server end (RFC 6455): the upgrade answer, then bytes in, messages out.

kubectl 1.30 and later try WebSocket before SPDY, with the ``v5.channel.k8s.io`` sub-protocol for exec and
attach; a v1.20 API server relays that request to the node unchanged, so a node that answers it saves the
client its fallback round trip. Only what those clients use is here: binary and text messages (fragmented or
not), ping/pong, close; no extensions.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cloud.errors import CloudError
from cloud.stream.upgrade import HeaderLines, UpgradeAnswer, header_values

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG = 1000, 1002, 1009


class WebSocketError(CloudError, ValueError):
    """The client broke the framing rules; the connection closes with 1002."""


def answer_websocket(headers: HeaderLines, supported: Sequence[str]) -> UpgradeAnswer:
    """The answer to a WebSocket upgrade for a server that speaks ``supported`` sub-protocols; the client's
    most preferred one it shares is chosen, and none shared is refused, so that kubectl falls back to SPDY."""
    keys = header_values(headers, "Sec-WebSocket-Key")
    if not keys or "13" not in header_values(headers, "Sec-WebSocket-Version"):
        return UpgradeAnswer(400, "Bad Request", [], b"unable to upgrade: not a WebSocket version 13 request\n")
    offered = header_values(headers, "Sec-WebSocket-Protocol")
    chosen = next((protocol for protocol in offered if protocol in supported), "")
    if not chosen:
        return UpgradeAnswer(400, "Bad Request", [], (f"unable to upgrade: no WebSocket sub-protocol in common: "
                                                      f"client offers {offered}, server speaks {list(supported)}\n"
                                                      ).encode())
    accept = base64.b64encode(hashlib.sha1((keys[0] + GUID).encode(), usedforsecurity=False).digest()).decode()
    return UpgradeAnswer(101, "Switching Protocols", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                      ("Sec-WebSocket-Accept", accept),
                                                      ("Sec-WebSocket-Protocol", chosen)], protocol=chosen)


@dataclass(frozen=True)
class Message:
    payload: bytes
    binary: bool


@dataclass(frozen=True)
class Closed:
    """The client closed (``code``), or broke the protocol (``error``); our close frame is in data_to_send."""
    code: int
    error: str = ""


WebSocketEvent = Message | Closed


class WebSocketConnection:
    """The server end of one WebSocket connection: ``receive_data`` -> events; ``send`` -> ``data_to_send``."""

    def __init__(self, *, max_message: int = 16 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._out = bytearray()
        self._fragments = bytearray()
        self._fragment_binary = True
        self._fragmenting = False
        self._max_message = max_message
        self.closed = False

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def send(self, payload: bytes, *, binary: bool = True) -> None:
        if not self.closed:
            self._frame(OP_BINARY if binary else OP_TEXT, payload)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        if not self.closed:
            self._frame(OP_CLOSE, struct.pack(">H", code))
            self.closed = True

    def connection_lost(self) -> list[WebSocketEvent]:
        """The transport ended without a close frame (1006, as RFC 6455 names it)."""
        if self.closed:
            return []
        self.closed = True
        return [Closed(1006, "the connection ended")]

    def receive_data(self, data: bytes) -> list[WebSocketEvent]:
        if self.closed:
            return []
        self._buffer += data
        events: list[WebSocketEvent] = []
        try:
            while not self.closed and (frame := self._next_frame()) is not None:
                self._handle(*frame, events)
        except WebSocketError as error:
            self.close(CLOSE_TOO_BIG if "larger" in str(error) else CLOSE_PROTOCOL_ERROR)
            events.append(Closed(CLOSE_PROTOCOL_ERROR, str(error)))
        return events

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        if len(self._buffer) < 2:
            return None
        first, second = self._buffer[0], self._buffer[1]
        if first & 0x70:
            raise WebSocketError("reserved bits set without an extension")
        if not second & 0x80:
            raise WebSocketError("a client frame is not masked")
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(self._buffer) < 4:
                return None
            length, offset = struct.unpack_from(">H", self._buffer, 2)[0], 4
        elif length == 127:
            if len(self._buffer) < 10:
                return None
            length, offset = struct.unpack_from(">Q", self._buffer, 2)[0], 10
        if length > self._max_message:
            raise WebSocketError(f"a frame of {length} bytes is larger than the {self._max_message} allowed")
        if len(self._buffer) < offset + 4 + length:
            return None
        mask = bytes(self._buffer[offset:offset + 4])
        masked = bytes(self._buffer[offset + 4:offset + 4 + length])
        del self._buffer[:offset + 4 + length]
        key = (mask * (length // 4 + 1))[:length]
        payload = (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")
        return bool(first & 0x80), first & 0x0F, payload

    def _handle(self, fin: bool, opcode: int, payload: bytes, events: list[WebSocketEvent]) -> None:
        if opcode >= OP_CLOSE:
            if not fin or len(payload) > 125:
                raise WebSocketError("a control frame is fragmented or longer than 125 bytes")
            if opcode == OP_PING:
                self._frame(OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL
                self.close(CLOSE_NORMAL)
                events.append(Closed(code))
            elif opcode != OP_PONG:
                raise WebSocketError(f"unknown control opcode {opcode}")
            return
        if opcode == OP_CONTINUATION:
            if not self._fragmenting:
                raise WebSocketError("a continuation frame with no message to continue")
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragmenting:
                raise WebSocketError("a new message began before the last one ended")
            self._fragmenting, self._fragment_binary = True, opcode == OP_BINARY
        else:
            raise WebSocketError(f"unknown data opcode {opcode}")
        self._fragments += payload
        if len(self._fragments) > self._max_message:
            raise WebSocketError(f"a message larger than the {self._max_message} bytes allowed")
        if fin:
            events.append(Message(bytes(self._fragments), self._fragment_binary))
            self._fragments.clear()
            self._fragmenting = False

    def _frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            head = struct.pack(">BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            head = struct.pack(">BBH", 0x80 | opcode, 126, length)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, length)
        self._out += head + payload
