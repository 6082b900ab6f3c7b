"""``/portForward`` from the API server, bridged to a node's stream end: one tunnel stream per forwarded
connection.

One ``kubectl port-forward`` is one upgraded connection (SPDY, or SPDY tunnelled in WebSocket as kubectl 1.31
and later first try), and each TCP connection a client makes to a forwarded local port is a pair of SPDY
streams on it (cloud/stream/portforward.py). Each pair becomes a tunnel stream of its own, opened when the
pair is complete: its own credit, so one slow connection never holds back another, and its own refusal (a
pod not on the node, a port nothing listens on), which kubectl shows for that connection while the others
go on. The streams count against the node's cap like any other.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from typing import TYPE_CHECKING

from cloud.stream import portforward
from cloud.stream.bridging import open_accepted, pod_node, send_refusal
from cloud.stream.portforward import (
    ForwardClientClosed,
    ForwardData,
    ForwardGone,
    ForwardOpened,
    PortForwardSession,
)
from cloud.stream.spdysession import SpdySession
from cloud.stream.spdytunnel import PORTFORWARD_TUNNEL, TunneledSpdy
from cloud.stream.tunnel import CloudStream, Tunnel
from cloud.stream.upgrade import answer_upgrade, is_websocket_request
from cloud.stream.upgradedwire import UpgradedWire
from cloud.stream.websocket import answer_websocket
from runtime.streamflow import StreamEnded, StreamIdle
from schemas.execrequest import ForwardRequest, forward_path
from schemas.streamframe import STDIN
from schemas.streamrequest import RequestRefused

if TYPE_CHECKING:
    from cloud.stream.https import KubeletHandler

log = logging.getLogger(__name__)

QUEUED_BYTES = 1024 * 1024
"""Bytes from kubectl's clients not yet taken by the node, over all connections: past it, the connection
is not read."""


def serve_forward(handler: KubeletHandler, path: str, query: str) -> None:
    handler.close_connection = True
    sock = handler.connection
    try:
        namespace, pod = forward_path(path, query)
        node = pod_node(handler.server.kube, namespace, pod)
    except RequestRefused as refused:
        send_refusal(sock, refused.code, str(refused))
        return
    headers = list(handler.headers.items())
    websocket = is_websocket_request(headers)
    answer = (answer_websocket(headers, (PORTFORWARD_TUNNEL,)) if websocket
              else answer_upgrade(headers, portforward.SUPPORTED_PROTOCOLS))
    sock.sendall(answer.to_bytes())
    if not answer.upgraded:
        return
    tunnel = TunneledSpdy() if websocket else None
    session = tunnel.session if tunnel is not None else SpdySession()
    forwarder = _Forwarder(handler, UpgradedWire(sock, tunnel or session), PortForwardSession(session), node,
                           namespace, pod)
    forwarder.run()


class _Connection:
    """One forwarded connection: its tunnel stream once the node accepted it, and the bytes for the node."""

    def __init__(self, request_id: str, port: int) -> None:
        self.request_id = request_id
        self.port = port
        self.stream: CloudStream | None = None
        self.to_node: queue.Queue[bytes | None] = queue.Queue()
        self.gone = threading.Event()


class _Forwarder:
    def __init__(self, handler: KubeletHandler, wire: UpgradedWire, channels: PortForwardSession, node: str,
                 namespace: str, pod: str) -> None:
        self.tunnel: Tunnel = handler.server.tunnel
        self.open_timeout_s = handler.server.open_timeout_s
        self.wire = wire
        self.channels = channels
        self.node = node
        self.namespace = namespace
        self.pod = pod
        self.connections: dict[str, _Connection] = {}
        self.queued = 0
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self.wire.run(self.channels.handle, self._act, paused=lambda: self.queued > QUEUED_BYTES)
        finally:
            for connection in list(self.connections.values()):
                self._gone(connection)

    def _act(self, action: object) -> None:
        match action:
            case ForwardOpened(request_id, port):
                connection = _Connection(request_id, port)
                self.connections[request_id] = connection
                threading.Thread(target=self._serve, args=(connection,), name=f"fwd-{request_id}",
                                 daemon=True).start()
            case ForwardData(request_id, data):
                if (found := self.connections.get(request_id)) is not None:
                    with self._lock:
                        self.queued += len(data)
                    found.to_node.put(data)
            case ForwardClientClosed(request_id):
                if (found := self.connections.get(request_id)) is not None:
                    found.to_node.put(b"")
            case ForwardGone(request_id):
                if (found := self.connections.pop(request_id, None)) is not None:
                    self._gone(found)

    def _gone(self, connection: _Connection) -> None:
        connection.gone.set()
        connection.to_node.put(None)
        if connection.stream is not None:
            self.tunnel.finish(connection.stream, "kubectl's connection ended")

    def _serve(self, connection: _Connection) -> None:
        """Open the connection's stream, then bring what the pod sends to kubectl until either end closes."""
        request = ForwardRequest(self.namespace, self.pod, connection.port)
        try:
            stream = open_accepted(self.tunnel, self.node, request.as_map(), self.open_timeout_s)
        except StreamEnded as ended:
            self.wire.step(functools.partial(self.channels.fail, connection.request_id, ended.reason))
            self._drop_queued(connection)
            return
        connection.stream = stream
        if connection.gone.is_set():
            self.tunnel.finish(stream, "kubectl's connection ended")
            return
        threading.Thread(target=self._to_node, args=(connection, stream), name=f"fwd-in-{connection.request_id}",
                         daemon=True).start()
        try:
            while True:
                try:
                    data = stream.inbox.get(self.tunnel.idle_s / 3)
                except StreamIdle:
                    if connection.gone.is_set():
                        return
                    continue
                except StreamEnded as end:
                    if end.code == 200:
                        self.wire.step(functools.partial(self.channels.close, connection.request_id))
                    elif not connection.gone.is_set():
                        self.wire.step(functools.partial(self.channels.fail, connection.request_id, end.reason))
                    return
                if not self.wire.step(functools.partial(self.channels.send, connection.request_id, data)):
                    return
                self.tunnel.grant(stream, len(data))
        finally:
            self.tunnel.finish(stream, "the forwarded connection ended")
            self.connections.pop(connection.request_id, None)

    def _to_node(self, connection: _Connection, stream: CloudStream) -> None:
        while True:
            data = connection.to_node.get()
            if data is None:
                return
            try:
                self.tunnel.send_data(stream, data, STDIN)
            except StreamEnded:
                self._drop_queued(connection)
                return
            with self._lock:
                self.queued -= len(data)
            if not data:
                continue
            with self.wire.lock:
                self.channels.consumed(connection.request_id, len(data))
            self.wire.step(lambda: None)

    def _drop_queued(self, connection: _Connection) -> None:
        while True:
            try:
                data = connection.to_node.get_nowait()
            except queue.Empty:
                return
            if data:
                with self._lock:
                    self.queued -= len(data)
