"""``/exec`` and ``/attach`` from the API server, bridged to a node's stream end through one tunnel stream.

The order a kubelet keeps: the request is checked (the query, the pod's node, and at the node the pod and
its container, where the command is created) before the upgrade is answered, so a refusal reaches kubectl
as an error with its reason; only then 101, and the remotecommand protocol speaks: SPDY v1 to v4 (v4's
error stream carries the exit code that kubectl makes its own), or WebSocket v5 when kubectl offers it and
the API server relays it (kubectl 1.30 and later try it first).

Three threads per exec: the request's own drives the connection (cloud/stream/upgradedwire.py), one pump
brings the node's stdout and stderr to the channels, and one forwards stdin and resizes to the node, no
faster than the node grants; while stdin waits for the node, the connection is not read (TCP holds back
kubectl), but the node's output keeps flowing, so a command that writes before it reads never deadlocks.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
from typing import TYPE_CHECKING

from cloud.stream import remotecommand, wschannels
from cloud.stream.bridging import open_accepted, pod_node, send_refusal
from cloud.stream.remotecommand import (
    Aborted,
    ExecOptions,
    Ready,
    RemoteCommandSession,
    Resized,
    StdinClosed,
    StdinData,
)
from cloud.stream.spdysession import SpdySession
from cloud.stream.tunnel import CloudStream, Tunnel
from cloud.stream.upgrade import answer_upgrade, is_websocket_request
from cloud.stream.upgradedwire import UpgradedWire
from cloud.stream.websocket import WebSocketConnection, answer_websocket
from cloud.stream.wschannels import WebSocketCommandSession
from runtime.streamflow import StreamEnded, StreamIdle
from schemas.execrequest import ExecRequest, exec_request
from schemas.streamframe import RESIZE, STDIN, STDOUT
from schemas.streamrequest import RequestRefused

if TYPE_CHECKING:
    from cloud.stream.https import KubeletHandler

log = logging.getLogger(__name__)

Channels = RemoteCommandSession | WebSocketCommandSession
STDIN_QUEUE_BYTES = 1024 * 1024
"""Stdin read from the API server and not yet taken by the node: past it, the connection is not read."""
_EOF = b""


def serve_exec(handler: KubeletHandler, path: str, query: str) -> None:
    """Answer an ``/exec`` or ``/attach`` request on the handler's connection, to its end."""
    handler.close_connection = True
    sock = handler.connection
    try:
        request = exec_request(path, query)
        node = pod_node(handler.server.kube, request.namespace, request.pod)
    except RequestRefused as refused:
        send_refusal(sock, refused.code, str(refused))
        return
    headers = list(handler.headers.items())
    websocket = is_websocket_request(headers)
    answer = (answer_websocket(headers, wschannels.SUPPORTED_PROTOCOLS) if websocket
              else answer_upgrade(headers, remotecommand.SUPPORTED_PROTOCOLS))
    if not answer.upgraded:
        sock.sendall(answer.to_bytes())
        return
    tunnel = handler.server.tunnel
    try:
        stream = open_accepted(tunnel, node, request.as_map(), handler.server.open_timeout_s)
    except StreamEnded as ended:
        send_refusal(sock, ended.code, ended.reason)
        return
    try:
        sock.sendall(answer.to_bytes())
        options = ExecOptions(list(request.command), request.container, request.stdin, request.stdout,
                              request.stderr, request.tty)
        if websocket:
            connection = WebSocketConnection()
            _Exec(UpgradedWire(sock, connection), WebSocketCommandSession(connection, options), tunnel, stream,
                  request, ready=True).run()
        else:
            session = SpdySession()
            _Exec(UpgradedWire(sock, session), RemoteCommandSession(session, answer.protocol, options), tunnel,
                  stream, request, ready=False).run()
    except OSError as exc:
        log.info("exec stream %s to node %s: the API server's connection failed: %s", stream.sid, node, exc)
    finally:
        tunnel.finish(stream, "the API server's connection ended")


class _Exec:
    def __init__(self, wire: UpgradedWire, channels: Channels, tunnel: Tunnel, stream: CloudStream,
                 request: ExecRequest, *, ready: bool) -> None:
        self.wire = wire
        self.channels = channels
        self.tunnel = tunnel
        self.stream = stream
        self.request = request
        self.ready = threading.Event()
        if ready:
            self.ready.set()
        self.over = threading.Event()
        self.to_node: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self.queued = 0
        self._queued_lock = threading.Lock()

    def run(self) -> None:
        threads = [threading.Thread(target=self._pump, name=f"exec-out-{self.stream.sid[:8]}", daemon=True),
                   threading.Thread(target=self._forward, name=f"exec-in-{self.stream.sid[:8]}", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            self.wire.run(self.channels.handle, self._act, paused=lambda: self.queued > STDIN_QUEUE_BYTES)
        finally:
            self.over.set()
            self.tunnel.finish(self.stream, "the API server's connection ended")
            self.to_node.put((STDIN, _EOF))

    def _act(self, action: object) -> None:
        """On the connection's thread: never waits for the node."""
        match action:
            case Ready():
                self.ready.set()
            case StdinData(data):
                self._queue(STDIN, data)
            case StdinClosed():
                self._queue(STDIN, _EOF)
            case Resized(width, height):
                self._queue(RESIZE, json.dumps({"Width": width, "Height": height}).encode())
            case Aborted(reason):
                log.info("exec stream %s: %s", self.stream.sid, reason)
                self.tunnel.finish(self.stream, reason)

    def _queue(self, channel: int, data: bytes) -> None:
        with self._queued_lock:
            self.queued += len(data)
        self.to_node.put((channel, data))

    def _forward(self) -> None:
        """Stdin and resizes to the node, as it grants; the SPDY window is given back once the node has them."""
        while not self.over.is_set():
            channel, data = self.to_node.get()
            if self.over.is_set():
                return
            try:
                self.tunnel.send_data(self.stream, data, channel)
            except StreamEnded:
                return
            with self._queued_lock:
                self.queued -= len(data)
            if channel == STDIN and data:
                with self.wire.lock:
                    self.channels.stdin_consumed(len(data))
                self.wire.step(lambda: None)  # wake the connection's thread: it may read again, and flush

    def _pump(self) -> None:
        """The node's output to the client once its streams are all there; then the exit code, and goodbye."""
        while not self.ready.wait(1.0):
            if self.over.is_set():
                return
        inbox = self.stream.inbox
        while True:
            try:
                channel, data = inbox.take(self.tunnel.idle_s / 3)
            except StreamIdle:
                if self.over.is_set():
                    return
                continue
            except StreamEnded as end:
                self._finish(end)
                return
            write = self.channels.write_stdout if channel == STDOUT else self.channels.write_stderr
            if not self.wire.step(functools.partial(write, data)):
                return
            self.tunnel.grant(self.stream, len(data))

    def _finish(self, end: StreamEnded) -> None:
        if end.code == 200:
            # An attach ends when the container's process does; the kubelet reports no exit code for it.
            code = self.stream.exit_code if self.stream.exit_code is not None else 0
            self.wire.step(lambda: self.channels.finish(code))
        else:
            log.info("exec stream %s of node %s: %s", self.stream.sid, self.stream.node, end.reason)
            self.wire.step(lambda: self.channels.finish(None, end.reason))
        self.wire.finish()
