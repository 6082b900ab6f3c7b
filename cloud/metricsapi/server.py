"""The HTTPS server the API server's aggregation layer calls for ``/apis/metrics.k8s.io/v1beta1``.

TLS with a serving certificate from the cluster CA (the APIService's ``caBundle``) and a client certificate
required from the request-header CA: only the API server's front proxy gets in, and its headers say who the
user is (cloud/metricsapi/frontproxy.py); each request is then authorized by the API server
(cloud/metricsapi/authz.py). ``/healthz``, ``/livez`` and ``/readyz`` answer any client with that
certificate, for the aggregation layer's availability checks.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from cloud.kube import KubeError
from cloud.metricsapi import objects
from cloud.metricsapi.authz import Authorizer
from cloud.metricsapi.frontproxy import FrontProxy
from cloud.metricsapi.routes import Answers, route
from runtime.tlsserver import HandshakingServer, peer_common_name

log = logging.getLogger(__name__)

HEALTH = frozenset({"/healthz", "/livez", "/readyz"})


def tls_context(cert_file: str, key_file: str, front_proxy: FrontProxy) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=front_proxy.ca_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class MetricsHttpServer(HandshakingServer):
    def __init__(self, address: tuple[str, int], answers: Answers, front_proxy: FrontProxy,
                 authorizer: Authorizer) -> None:
        super().__init__(address, _Handler)
        self.answers = answers
        self.front_proxy = front_proxy
        self.authorizer = authorizer

    def secure(self, context: ssl.SSLContext) -> None:
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def serve(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="metrics-https", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MetricsHttpServer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.client_address[0], format % args)

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path in HEALTH:
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        user = self.server.front_proxy.identify(peer_common_name(self.connection), self.headers)
        if user is None:
            self._send(401, objects.status(401, "Unauthorized", "only the API server's front proxy, naming a user, "
                                                               "may call the metrics API"))
            return
        r = route(url.path)
        if r is None:
            self._send(404, objects.status(404, "NotFound", f"the server could not find {url.path}"))
            return
        if r.resource:
            try:
                allowed, reason = self.server.authorizer.allowed(user, r.attributes)
            except KubeError as exc:
                self._send(503, objects.status(503, "ServiceUnavailable", f"authorization failed: {exc}"))
                return
            if not allowed:
                a = r.attributes
                where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
                self._send(403, objects.status(403, "Forbidden", f'{a.resource}.{objects.GROUP} is forbidden: User '
                                                                 f'"{user.name}" cannot {a.verb} resource '
                                                                 f'"{a.resource}" in API group "{objects.GROUP}"'
                                                                 f"{where}{': ' + reason if reason else ''}"))
                return
        self._send(*self.server.answers.answer(url.path, r, url.query))
