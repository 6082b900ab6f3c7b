"""Just enough of an API server for ``kubectl exec``, ``attach`` and ``port-forward`` to talk to our SPDY code.

kubectl GETs the pod, then POSTs the pod's ``exec``/``attach``/``portforward`` subresource with an upgrade to
SPDY/3.1 (after trying WebSocket, which the server refuses so that kubectl falls back, as it does against a
v1.20 API server). From there on the connection is the same as the one a v1.20 API server relays unchanged
to the kubelet, so this proves cloud.stream's codec against the real client's Go implementation. The
"container" is a local process (``subprocess``) and a forwarded port is a port on 127.0.0.1.

Threads and blocking sockets; an upgraded connection is driven by the stream server's own loop
(cloud/stream/upgradedwire.py: one thread owns the socket, the pumps' steps are written in order), so the
tests here exercise it against real kubectl too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import queue
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cloud.stream import portforward, remotecommand, wschannels
from cloud.stream.portforward import (
    ForwardClientClosed,
    ForwardData,
    ForwardGone,
    ForwardOpened,
    PortForwardSession,
)
from cloud.stream.remotecommand import (
    Aborted,
    Ready,
    RemoteCommandError,
    RemoteCommandSession,
    Resized,
    StdinClosed,
    StdinData,
)
from cloud.stream.spdysession import SpdySession
from cloud.stream.spdytunnel import PORTFORWARD_TUNNEL, TunneledSpdy
from cloud.stream.upgrade import answer_upgrade, is_websocket_request
from cloud.stream.upgradedwire import UpgradedWire
from cloud.stream.websocket import WebSocketConnection, answer_websocket
from cloud.stream.wschannels import WebSocketCommandSession

MAX_HEAD = 64 * 1024
Channels = RemoteCommandSession | WebSocketCommandSession
CONTAINER = "main"


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]


@dataclass
class ServerLog:
    """What the server saw, for the tests' assertions."""
    requests: list[str] = field(default_factory=list)
    websocket_refused: int = 0
    upgraded: list[str] = field(default_factory=list)
    resizes: list[tuple[int, int]] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)


class KubectlStreamServer:
    """Serves pod ``NAMESPACE/NAME`` (any name) on 127.0.0.1, over plain HTTP or with ``tls`` HTTPS.

    It answers both the API server's paths (``/api/v1/namespaces/NS/pods/NAME/exec?stdin=true...``, what
    kubectl sends) and the kubelet's (``/exec/NS/NAME/CONTAINER?input=1...``, ``/portForward/NS/NAME``, what
    a real API server sends a node's kubelet endpoint).
    """

    def __init__(self, tls: ssl.SSLContext | None = None, *, websocket: bool = False) -> None:
        """``websocket``: answer exec and attach over WebSocket (v5) too; else refuse it, as a v1.20 kubelet
        does, so that kubectl falls back to SPDY."""
        self.log = ServerLog()
        self._tls = tls
        self._websocket = websocket
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._log_lock = threading.Lock()

    @property
    def websocket(self) -> bool:
        return self._websocket

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    def start(self) -> KubectlStreamServer:
        self._spawn(self._accept)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()

    def _spawn(self, target: Any, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, raw: socket.socket) -> None:
        # A client that hangs up mid-answer, or fails the TLS handshake, ends only its connection.
        with contextlib.suppress(OSError, ssl.SSLError):
            conn = self._tls.wrap_socket(raw, server_side=True) if self._tls is not None else raw
            with conn:
                self._requests(conn)
        raw.close()

    def _requests(self, conn: socket.socket) -> None:
        buffered = b""
        while True:
            request, buffered = _read_request(conn, buffered)
            if request is None:
                return
            with self._log_lock:
                self.log.requests.append(f"{request.method} {request.path}" + (f"?{request.query}" * bool(
                    request.query)))
            parts = request.path.strip("/").split("/")
            if request.method in ("GET", "POST") and parts[0] in ("exec", "attach") and len(parts) in (4, 5):
                self._upgrade(conn, request, parts[0], buffered, container=parts[-1])
                return
            if request.method in ("GET", "POST") and parts[0] == "portForward" and len(parts) in (3, 4):
                self._upgrade(conn, request, "portforward", buffered)
                return
            if request.method == "GET" and request.path in _DISCOVERY:
                _respond_json(conn, 200, _DISCOVERY[request.path])
                continue
            if request.method == "GET" and len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] \
                    and parts[4] == "pods":
                _respond_json(conn, 200, _pod(parts[3], parts[5]))
                continue
            if request.method in ("GET", "POST") and len(parts) == 7 and parts[4] == "pods" \
                    and parts[6] in ("exec", "attach", "portforward"):
                self._upgrade(conn, request, parts[6], buffered)
                return
            _respond_json(conn, 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "reason": "NotFound", "code": 404, "message": "not found"})

    def _upgrade(self, conn: socket.socket, request: Request, kind: str, early: bytes, *,
                 container: str | None = None) -> None:
        """``container`` is there for the kubelet's paths, which carry it in the path and the options in
        their own query form."""
        supported = portforward.SUPPORTED_PROTOCOLS if kind == "portforward" else remotecommand.SUPPORTED_PROTOCOLS
        websocket = self._websocket and is_websocket_request(request.headers)
        if websocket:
            answer = answer_websocket(request.headers, (PORTFORWARD_TUNNEL,) if kind == "portforward"
                                      else wschannels.SUPPORTED_PROTOCOLS)
        else:
            answer = answer_upgrade(request.headers, supported)
        if answer.upgraded and kind != "portforward":
            try:
                if container is None:
                    options = remotecommand.apiserver_exec_options(request.query, attach=kind == "attach")
                else:
                    options = remotecommand.kubelet_exec_options(request.query, container, attach=kind == "attach")
            except RemoteCommandError as error:
                conn.sendall(_text(400, str(error)))
                return
        conn.sendall(answer.to_bytes())
        with self._log_lock:
            if not answer.upgraded and is_websocket_request(request.headers):
                self.log.websocket_refused += 1
            if answer.upgraded:
                self.log.upgraded.append(f"{kind} {answer.protocol}")
        if not answer.upgraded:
            return
        if kind == "portforward":
            tunnel = TunneledSpdy() if websocket else None
            spdy = tunnel.session if tunnel is not None else SpdySession()
            _Forwarder(UpgradedWire(conn, tunnel or spdy), PortForwardSession(spdy)).run(early)
            return
        command = options.command or ["sh", "-c", "cat"]  # attach: the "container's" main process
        with self._log_lock:
            self.log.commands.append(command)
        if websocket:
            connection = WebSocketConnection()
            channels: Channels = WebSocketCommandSession(connection, options)
            wire = UpgradedWire(conn, connection)
        else:
            session = SpdySession()
            channels = RemoteCommandSession(session, answer.protocol, options)
            wire = UpgradedWire(conn, session)
        _Command(wire, channels, command, self.log).run(early)


class _Command:
    """The "container's" process behind one exec or attach. The wire's thread only queues: stdin is written
    to the process by a thread of its own, and the process's output goes through ``wire.step``."""

    def __init__(self, wire: UpgradedWire, channels: Channels, command: list[str], log: ServerLog) -> None:
        self.wire = wire
        self.channels = channels
        self.command = command
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.stdin: queue.Queue[bytes | None] = queue.Queue()

    def run(self, early: bytes) -> None:
        if isinstance(self.channels, WebSocketCommandSession):
            self._start()  # WebSocket has no streams to wait for
        self.wire.run(self.channels.handle, self._act, early=early)

    def _act(self, action: object) -> None:
        match action:
            case Ready():
                self._start()
            case StdinData(data):
                self.stdin.put(data)
            case StdinClosed():
                self.stdin.put(None)
            case Resized(width, height):
                self.log.resizes.append((width, height))
            case Aborted():
                if self.process is not None:
                    self.process.kill()

    def _write_stdin(self, pipe: Any) -> None:
        while (data := self.stdin.get()) is not None:
            try:
                pipe.write(data)
                pipe.flush()
            except (BrokenPipeError, ValueError):
                pass  # the command stopped reading; its exit code will say so
            with self.wire.lock:
                self.channels.stdin_consumed(len(data))
            self.wire.step(lambda: None)  # the window update goes out
        with contextlib.suppress(OSError):
            pipe.close()

    def _start(self) -> None:
        """On the wire's thread (Ready) or before it runs (WebSocket): starts threads, never waits."""
        options = self.channels.options
        try:
            stdin = subprocess.PIPE if options.stdin else subprocess.DEVNULL
            self.process = subprocess.Popen(self.command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as error:
            with self.wire.lock:
                self.channels.finish(None, f"cannot run {self.command}: {error}")
            self.wire.finish()
            return
        if self.process.stdin is not None:
            threading.Thread(target=self._write_stdin, args=(self.process.stdin,), daemon=True).start()
        pumps = [threading.Thread(target=self._pump, args=(pipe, write), daemon=True)
                 for pipe, write in ((self.process.stdout, self.channels.write_stdout),
                                     (self.process.stderr, self.channels.write_stderr))]
        for pump in pumps:
            pump.start()
        threading.Thread(target=self._wait, args=(pumps,), daemon=True).start()

    def _pump(self, pipe: Any, write: Any) -> None:
        while chunk := pipe.read1(65536):
            if not self.wire.step(functools.partial(write, chunk)):
                return

    def _wait(self, pumps: list[threading.Thread]) -> None:
        assert self.process is not None
        for pump in pumps:
            pump.join()
        code = self.process.wait()
        self.wire.step(functools.partial(self.channels.finish, code if code >= 0 else 128 - code))
        self.wire.finish()


class _Forwarder:
    """The local ports behind one port-forward: each connection has a writer thread (the wire's thread only
    queues) and a pump that brings what the port sends through ``wire.step``."""

    def __init__(self, wire: UpgradedWire, channels: PortForwardSession) -> None:
        self.wire = wire
        self.channels = channels
        self.targets: dict[str, queue.Queue[bytes | None]] = {}

    def run(self, early: bytes) -> None:
        self.wire.run(self.channels.handle, self._act, early=early)
        for pending in self.targets.values():
            pending.put(None)

    def _act(self, action: object) -> None:
        match action:
            case ForwardOpened(request_id, port):
                try:
                    opened = socket.create_connection(("127.0.0.1", port), timeout=5)
                except OSError as error:
                    with self.wire.lock:
                        self.channels.fail(request_id, f"cannot connect to port {port}: {error}")
                    return
                opened.settimeout(None)
                self.targets[request_id] = queue.Queue()
                threading.Thread(target=self._write, args=(request_id, opened, self.targets[request_id]),
                                 daemon=True).start()
                threading.Thread(target=self._pump, args=(request_id, opened), daemon=True).start()
            case ForwardData(request_id, data):
                if (pending := self.targets.get(request_id)) is not None:
                    pending.put(data)
            case ForwardClientClosed(request_id):
                if (pending := self.targets.get(request_id)) is not None:
                    pending.put(b"")
            case ForwardGone(request_id):
                if (pending := self.targets.pop(request_id, None)) is not None:
                    pending.put(None)

    def _write(self, request_id: str, target: socket.socket, pending: queue.Queue[bytes | None]) -> None:
        while (data := pending.get()) is not None:
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                continue
            with contextlib.suppress(OSError):
                target.sendall(data)
            with self.wire.lock:
                self.channels.consumed(request_id, len(data))
            self.wire.step(lambda: None)
        target.close()

    def _pump(self, request_id: str, target: socket.socket) -> None:
        while True:
            try:
                chunk = target.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.wire.step(functools.partial(self.channels.close, request_id))
                return
            if not self.wire.step(functools.partial(self.channels.send, request_id, chunk)):
                return


def _read_request(conn: socket.socket, buffered: bytes) -> tuple[Request | None, bytes]:
    while b"\r\n\r\n" not in buffered:
        if len(buffered) > MAX_HEAD:
            return None, b""
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        buffered += chunk
    head, rest = buffered.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = [(name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    length = int(next((value for name, value in headers if name.lower() == "content-length"), "0") or "0")
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    split = urlsplit(target)
    return Request(method, split.path, split.query, headers), rest[length:]


_DISCOVERY: dict[str, dict[str, Any]] = {
    "/version": {"major": "1", "minor": "20", "gitVersion": "v1.20.2", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
         "verbs": ["get", "list"]},
        *({"name": f"pods/{sub}", "singularName": "", "namespaced": True, "kind": kind, "verbs": ["create", "get"]}
          for sub, kind in (("exec", "PodExecOptions"), ("attach", "PodAttachOptions"),
                            ("portforward", "PodPortForwardOptions")))]},
}


def _pod(namespace: str, name: str) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000001"},
            "spec": {"containers": [{"name": CONTAINER, "image": "localhost/busybox"}], "nodeName": "edge-1"},
            "status": {"phase": "Running"}}


def _respond_json(conn: socket.socket, status: int, body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n")
    conn.sendall(head.encode() + raw)


def _text(status: int, message: str) -> bytes:
    raw = (message + "\n").encode()
    return (f"HTTP/1.1 {status} Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {len(raw)}\r\n"
            "Connection: close\r\n\r\n").encode() + raw
