"""The Kubernetes port-forward protocol (portforward.k8s.io) over a SPDY session, sans-IO.

Facts of the protocol as the kubelet speaks it: every forwarded TCP connection is a pair of streams the
client opens, an ``error`` stream and then a ``data`` stream, both with headers ``streamType``, ``port`` (1 to
65535) and ``requestID`` (the pair's key; a client too old to send one gets the kubelet's guess from the
stream ids: the error stream's own id, the data stream's id minus 2). The data stream carries the bytes both
ways; anything written on the error stream is shown by kubectl as the failure of that connection. Many pairs
share one connection, one per ``kubectl port-forward`` client connection.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from cloud.stream.spdyframes import Headers, RstStatus
from cloud.stream.spdysession import (
    ConnectionClosed,
    DataReceived,
    Event,
    SpdySession,
    StreamEnded,
    StreamOpened,
    StreamReset,
)

PROTOCOL = "portforward.k8s.io"
SUPPORTED_PROTOCOLS = (PROTOCOL,)


@dataclass(frozen=True)
class ForwardOpened:
    """A client connection to ``port``: connect to it, and pass bytes with ``send``/``ForwardData``."""
    request_id: str
    port: int


@dataclass(frozen=True)
class ForwardData:
    request_id: str
    data: bytes


@dataclass(frozen=True)
class ForwardClientClosed:
    """The client will send nothing more: shut down the writing half towards the port."""
    request_id: str


@dataclass(frozen=True)
class ForwardGone:
    """The pair was reset or the connection ended: close the connection to the port."""
    request_id: str


ForwardEvent = ForwardOpened | ForwardData | ForwardClientClosed | ForwardGone


@dataclass
class _Pair:
    port: int
    data_id: int = 0
    error_id: int = 0
    opened: bool = False


@dataclass
class PortForwardSession:
    """The forwarded connections of one port-forward on ``session``; ``ports``, if given, are the only ones
    a client may ask for (a pod's declared ports, say); any other is refused on the pair's error stream."""
    session: SpdySession
    ports: Collection[int] | None = None
    _pairs: dict[str, _Pair] = field(default_factory=dict)
    _by_stream: dict[int, str] = field(default_factory=dict)

    def handle(self, events: Iterable[Event]) -> list[ForwardEvent]:
        out: list[ForwardEvent] = []
        for event in events:
            match event:
                case StreamOpened(stream_id, headers):
                    self._opened(stream_id, headers, out)
                case DataReceived(stream_id, data):
                    request_id = self._by_stream.get(stream_id)
                    pair = self._pairs.get(request_id or "")
                    if pair is not None and request_id is not None and stream_id == pair.data_id and pair.opened:
                        out.append(ForwardData(request_id, data))  # given back by consumed() once delivered
                    else:
                        self.session.consumed(stream_id, len(data))  # the error stream's bytes mean nothing
                case StreamEnded(stream_id):
                    request_id = self._by_stream.get(stream_id)
                    pair = self._pairs.get(request_id or "")
                    if request_id is not None and pair is not None and stream_id == pair.data_id and pair.opened:
                        out.append(ForwardClientClosed(request_id))
                case StreamReset(stream_id):
                    request_id = self._by_stream.get(stream_id)
                    if request_id is not None and request_id in self._pairs:
                        self._drop(request_id, out)
                case ConnectionClosed():
                    for request_id in list(self._pairs):
                        self._drop(request_id, out)
        return out

    def _opened(self, stream_id: int, headers: Headers, out: list[ForwardEvent]) -> None:
        kind = headers.get("streamtype", [""])[0]
        port_text = headers.get("port", [""])[0]
        if kind not in ("data", "error") or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            self.session.reset_stream(stream_id, RstStatus.PROTOCOL_ERROR)  # the kubelet rejects it the same way
            return
        port = int(port_text)
        request_id = headers.get("requestid", [""])[0]
        if not request_id:
            request_id = str(stream_id if kind == "error" else stream_id - 2)
        pair = self._pairs.setdefault(request_id, _Pair(port))
        if (pair.data_id if kind == "data" else pair.error_id) or pair.port != port:
            self.session.reset_stream(stream_id, RstStatus.PROTOCOL_ERROR)
            return
        self.session.reply(stream_id)
        self._by_stream[stream_id] = request_id
        if kind == "data":
            pair.data_id = stream_id
        else:
            pair.error_id = stream_id
        if not (pair.data_id and pair.error_id):
            return
        if self.ports is not None and port not in self.ports:
            self.fail(request_id, f"port {port} is not a port of this pod")
            return
        pair.opened = True
        out.append(ForwardOpened(request_id, port))

    def send(self, request_id: str, data: bytes) -> None:
        """Bytes from the port to the client."""
        pair = self._pairs.get(request_id)
        if pair is not None and data and self.session.can_send(pair.data_id):
            self.session.send_data(pair.data_id, data)

    def consumed(self, request_id: str, count: int) -> None:
        pair = self._pairs.get(request_id)
        if pair is not None:
            self.session.consumed(pair.data_id, count)

    def close(self, request_id: str) -> None:
        """The port's side ended: end both streams of the pair (kubectl then closes its client connection)."""
        pair = self._pairs.pop(request_id, None)
        if pair is None:
            return
        for stream_id in (pair.data_id, pair.error_id):
            self.session.end_stream(stream_id)
            self._by_stream.pop(stream_id, None)

    def fail(self, request_id: str, message: str) -> None:
        """The connection to the port failed: kubectl shows ``message`` for this forwarded connection."""
        pair = self._pairs.get(request_id)
        if pair is not None and pair.error_id and self.session.can_send(pair.error_id):
            self.session.send_data(pair.error_id, message.encode())
        self.close(request_id)

    def _drop(self, request_id: str, out: list[ForwardEvent]) -> None:
        pair = self._pairs.pop(request_id)
        for stream_id in (pair.data_id, pair.error_id):
            self._by_stream.pop(stream_id, None)
            if stream_id:
                self.session.reset_stream(stream_id)
        if pair.opened:
            out.append(ForwardGone(request_id))
