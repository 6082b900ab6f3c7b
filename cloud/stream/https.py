"""The kubelet API as the API server calls it, served by the cloud stream server over HTTPS.

TLS with a serving certificate the API server can verify (``--kubelet-certificate-authority``) and
client certificates required: only a certificate from the client CA whose CN is an allowed one (the API
server's ``--kubelet-client-certificate``, ``kube-apiserver-kubelet-client`` as kubeadm names it) may
open a stream; any other is answered 403, and a client with no certificate fails the handshake.

Served: ``GET /containerLogs/{namespace}/{pod}/{container}``, whose node is the pod's ``spec.nodeName``
from the API server, whatever address the request came to: every edge node's kubelet endpoint is this
server. And ``GET /metrics/resource`` and ``/stats/summary`` of the node the API server's node proxy
names (cloud/stream/metricsroute.py).

Errors go back as the kubelet sends them, plain text, with one translation: the API server (v1.20) shows
the user the text of a kubelet's 400 or 500 answer, but replaces that of a 404, 503 or 504 with a generic
"the server is currently unable to handle the request". So a stream that fails for want of the node (link
down, node silent, pod not on it) is answered 500 with the reason, which ``kubectl logs`` prints; 400, 403
and 429 (the cap on streams per node) keep their codes.

``/exec``, ``/attach`` (cloud/stream/execbridge.py) and ``/portForward`` (cloud/stream/forwardbridge.py), POST
or GET, are upgraded to the streaming protocols; their refusals keep their real codes, since the API server
hands an upgrade's refusal to kubectl unchanged.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import select
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cloud.kube import Kube, KubeError
from cloud.stream.execbridge import serve_exec
from cloud.stream.forwardbridge import serve_forward
from cloud.stream.metricsroute import fetch_metrics
from cloud.stream.tunnel import CloudStream, Tunnel
from runtime.streamflow import StreamEnded, StreamIdle
from runtime.tlsserver import HandshakingServer, peer_common_name
from schemas.execrequest import stream_op
from schemas.metricsrequest import metrics_kind
from schemas.streamrequest import RequestRefused, log_request

log = logging.getLogger(__name__)

BRIDGES: dict[str, Callable[[KubeletHandler, str, str], None]] = {
    "exec": serve_exec, "attach": serve_exec, "portForward": serve_forward}
"""The kubelet operations served by upgrading the connection, by the first segment of their path."""
SHOWN_CODES = frozenset({400, 403, 429})
"""The error codes whose text reaches ``kubectl`` through the API server as they are; others go as 500."""


@dataclass(frozen=True)
class ServerTls:
    cert: str
    key: str
    client_ca: str
    client_cns: frozenset[str]

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        context.load_verify_locations(self.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
        return context


class StreamHttpServer(HandshakingServer):
    def __init__(self, address: tuple[str, int], tls: ServerTls, kube: Kube, tunnel: Tunnel,
                 open_timeout_s: float) -> None:
        super().__init__(address, KubeletHandler)
        self.tls = tls
        self.kube = kube
        self.tunnel = tunnel
        self.open_timeout_s = open_timeout_s
        self.socket = tls.context().wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def serve(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="stream-https", daemon=True)
        thread.start()
        return thread


class KubeletHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StreamHttpServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def _client_cn(self) -> str:
        return peer_common_name(self.connection)

    def _refuse(self, code: int, message: str) -> None:
        body = message.encode() + b"\n"
        self.send_response(code if code in SHOWN_CODES else 500)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        cn = self._client_cn()
        if cn not in self.server.tls.client_cns:
            log.warning("refused %s from %s: client certificate CN=%s is not the API server's", self.path,
                        self.client_address[0], cn)
            self._refuse(403, f"Forbidden: client certificate CN={cn!r} may not open streams; only the API "
                              f"server's kubelet client certificate may")
            return
        url = urlsplit(self.path)
        bridge = BRIDGES.get(stream_op(url.path))
        if bridge is not None:  # the upgrade protocols: exec, attach, port-forward
            bridge(self, url.path, url.query)
            return
        if (kind := metrics_kind(url.path)) is not None:
            answer = fetch_metrics(self.server.tunnel, self.headers.get("X-Forwarded-Uri"), kind,
                                   self.server.open_timeout_s)
            if answer.code != 200:
                self._refuse(answer.code, answer.message)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        try:
            request = log_request(url.path, url.query)
        except RequestRefused as exc:
            self._refuse(exc.code, str(exc))
            return
        try:
            pod = self.server.kube.get_pod(request.namespace, request.pod)
        except KubeError as exc:
            self._refuse(503, f"cannot read pod {request.namespace}/{request.pod}: {exc}")
            return
        node = ((pod or {}).get("spec") or {}).get("nodeName")
        if pod is None or not node:
            self._refuse(404, f"pod {request.namespace}/{request.pod} is not on any node")
            return
        try:
            stream = self.server.tunnel.open(node, request.as_map())
        except StreamEnded as exc:
            self._refuse(exc.code, exc.reason)
            return
        try:
            self._relay(stream)
        finally:
            self.server.tunnel.finish(stream, "the API server's request ended")

    do_POST = do_GET  # the API server POSTs exec, attach and port-forward (a kubelet takes either)

    def _relay(self, stream: CloudStream) -> None:
        tunnel = self.server.tunnel
        if not stream.inbox.started.wait(self.server.open_timeout_s):
            self._refuse(504, f"node {stream.node} did not answer within {self.server.open_timeout_s:g} s")
            return
        ended = stream.inbox.ended
        if ended is not None and ended.code != 200 and stream.inbox.buffered == 0:
            self._refuse(ended.code, ended.reason)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        at_line_start = True
        while True:
            try:
                chunk = stream.inbox.get(tunnel.idle_s / 3)
            except StreamIdle:
                if self._client_gone():
                    return
                continue
            except StreamEnded as end:
                if end.code == 200:
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    log.info("stream %s of node %s: %s", stream.sid, stream.node, end.reason)
                    self._break(broken_line(stream.node, end, at_line_start))
                return
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            except OSError:
                return
            at_line_start = chunk.endswith(b"\n")
            tunnel.grant(stream, len(chunk))

    def _break(self, last_line: bytes) -> None:
        """End a log whose status (200) is sent as broken: ``last_line`` as its last chunk, then the connection
        closed without the chunk that ends the body, so the API server reads an unexpected EOF. It does not tell
        kubectl so: kube-apiserver v1.20 copies a log with ``io.Copy`` and drops its error, ending its own
        response cleanly, and ``kubectl logs -f`` exits 0 (a reset connection instead does the same: tried with
        kubectl 1.32). The line is what the user is told."""
        with contextlib.suppress(OSError):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(last_line), last_line))
            self.wfile.flush()
        self.close_connection = True

    def _client_gone(self) -> bool:
        """The API server closed its connection (its reader went away) while the log was quiet."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            self.connection.setblocking(False)
            try:  # an SSL socket cannot peek; a GET's client sends nothing more, so a byte read is no loss
                return bool(self.connection.recv(1) == b"")
            finally:
                self.connection.setblocking(True)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            return True


LINK_LOST_CODES = frozenset({503, 504})
"""How the tunnel ends a stream whose node went away: its link went down (503) or the node fell silent (504)."""


def broken_line(node: str, end: StreamEnded, at_line_start: bool) -> bytes:
    """The line a broken log ends with, on a line of its own: the only word of it that reaches ``kubectl``."""
    what = f"the link to node {node} was lost" if end.code in LINK_LOST_CODES else f"node {node} ended the log"
    return (b"" if at_line_start else b"\n") + f"error: {what} ({end.reason}); the log is cut here\n".encode()
