"""SPDY tunnelled through WebSocket, sans-IO: how kubectl 1.31 and later first try port-forward.

The sub-protocol ``SPDY/3.1+portforward.k8s.io`` says the WebSocket's binary messages carry, in order, the
bytes of a SPDY/3.1 connection, the same port-forward conversation as over a plain upgrade; so this joins a
WebSocket end and a SPDY session, and the port-forward protocol above it is unchanged.
"""

from __future__ import annotations

from cloud.stream.portforward import PROTOCOL as PORTFORWARD
from cloud.stream.spdysession import ConnectionClosed, Event, SpdySession
from cloud.stream.websocket import Closed, Message, WebSocketConnection

TUNNEL_PREFIX = "SPDY/3.1+"
PORTFORWARD_TUNNEL = TUNNEL_PREFIX + PORTFORWARD


class TunneledSpdy:
    """A SPDY ``session`` whose bytes travel in the binary messages of a WebSocket ``connection``."""

    def __init__(self, session: SpdySession | None = None, connection: WebSocketConnection | None = None) -> None:
        self.session = session or SpdySession()
        self.connection = connection or WebSocketConnection()

    def receive_data(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for message in self.connection.receive_data(data):
            match message:
                case Message(payload):
                    events += self.session.receive_data(payload)
                case Closed(code, error):
                    events += self.session.connection_lost()
                    if error:
                        events.append(ConnectionClosed(f"WebSocket {code}: {error}", error=True))
        return events

    def connection_lost(self) -> list[Event]:
        self.connection.connection_lost()
        return self.session.connection_lost()

    def data_to_send(self) -> bytes:
        spdy = self.session.data_to_send()
        if spdy:
            self.connection.send(spdy)
        return self.connection.data_to_send()
