"""The join endpoint: edge nodes trade a join token and a CSR for their identity, over HTTPS.

KubeEdge's CloudHub serves this on port 10002; so does this process, on its own, because
it is the only cloud component that holds the CA key in memory and it should be small.

- ``GET /ca.crt``: the cluster CA, unauthenticated; the node checks it against the hash in
  its token before trusting anything else (kubeadm's discovery does the same).
- ``POST /join`` ``{"token", "node", "csr"}``: a certificate for ``CN=<node>``, signed from the
  node's own CSR, and the cloud broker's address: every member of a NATS cluster, in one URL, which
  the node's bridge moves along when its member dies. The brokers' certificate must name each member
  (``edgehive init --cloud-broker``), or the endpoint does not start.
- ``POST /renew`` ``{"node", "csr"}`` over a connection made with the node's current
  certificate: a new certificate before the old one expires (rotation without downtime).
"""

from __future__ import annotations

import json
import logging
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloud.clusterpki import ClusterPki, JoinRefused
from cloud.joinserver.nodeobject import ensure_edge_node
from cloud.kube import KubeError
from runtime.address import Address
from runtime.processsettings import ProcessSettings
from runtime.qos import check_qos
from runtime.url import BrokerUrl

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
"""A CSR is about 500 bytes; anything near this is not a join request."""


@dataclass(frozen=True)
class JoinServerSettings(ProcessSettings):
    listen: str = field(default="0.0.0.0:10002", metadata={"help": "HOST:PORT for HTTPS"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={"help": "API server URL instead of the kubeconfig's"})
    cloud_broker: str = field(default="", metadata={
        "help": "the cloud broker URL joining nodes are told to use, mqtts://HOST:PORT, or a NATS cluster's "
                "members as mqtts://HOST:PORT,HOST:PORT,... (required)"})
    down_qos: int | None = field(default=None, metadata={
        "help": "the QoS joining nodes' bridges subscribe to their down topic with (written into edge.yaml): 0 "
                "for a NATS cluster, where each QoS 1 subscription is a replicated JetStream consumer per node "
                "(CloudHub resends every resource until the node answers it); default: not said, the bridge's 1"})

    def __post_init__(self) -> None:
        if self.down_qos is not None:
            check_qos("down_qos", self.down_qos)
        Address.parse(self.listen)
        if not self.cloud_broker.startswith("mqtts://"):
            raise ValueError("--cloud-broker must be an mqtts:// URL: nodes connect with their certificate over TLS")
        BrokerUrl.parse_list(self.cloud_broker)  # every member an address


class JoinHandler(BaseHTTPRequestHandler):
    server: JoinServer

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _reply(self, status: HTTPStatus, body: dict[str, Any] | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"a JSON body of at most {MAX_BODY} bytes is required"})
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as exc:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"the body is not JSON: {exc}"})
            return None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("node", "csr")):
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "expected {\"node\": ..., \"csr\": ...} as strings"})
            return None
        return body

    def do_GET(self) -> None:
        if self.path == "/ca.crt":
            self._reply(HTTPStatus.OK, self.server.ca_pem, "application/x-pem-file")
        elif self.path == "/healthz":
            self._reply(HTTPStatus.OK, {"ok": True})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "GET /ca.crt, POST /join or POST /renew"})

    def do_POST(self) -> None:
        body = self._json_body()
        if body is None:
            return
        node, csr = body["node"], body["csr"].encode()
        try:
            if self.path == "/join":
                token = body.get("token")
                if not isinstance(token, str):
                    self._reply(HTTPStatus.BAD_REQUEST, {"error": "a join needs a token (edgehive gettoken)"})
                    return
                cert = self.server.pki.join(token, node, csr)
                ensure_edge_node(self.server.pki.kube, node)  # for CloudHub replicas to serve it: nodeobject.py
            elif self.path == "/renew":
                presented = self.connection.getpeercert(binary_form=True)
                if not presented:
                    self._reply(HTTPStatus.UNAUTHORIZED, {"error": "renewal needs the node's current certificate"})
                    return
                cert = self.server.pki.renew(node, ssl.DER_cert_to_PEM_cert(presented).encode(), csr)
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": "POST /join or POST /renew"})
                return
        except JoinRefused as exc:
            log.warning("refused %s for node %r from %s: %s", self.path, node, self.address_string(), exc)
            self._reply(HTTPStatus.FORBIDDEN, {"error": str(exc)})
            return
        except KubeError as exc:
            log.error("%s for node %r failed: %s", self.path, node, exc)
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"the cluster could not record it ({exc}); retry"})
            return
        log.info("%s: issued a certificate to node %s", self.path, node)
        answer: dict[str, Any] = {"certificate": cert.decode(), "ca": self.server.ca_pem.decode(),
                                  "cloud_broker": self.server.cloud_broker}
        if self.server.down_qos is not None:
            answer["down_qos"] = self.server.down_qos
        self._reply(HTTPStatus.OK, answer)


class JoinServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pki: ClusterPki, cloud_broker: str,
                 down_qos: int | None = None) -> None:
        super().__init__(address, JoinHandler)
        self.pki = pki
        self.cloud_broker = cloud_broker
        self.down_qos = down_qos
        ca, _ = pki.ca()
        self.ca_pem = ca.cert_pem
        identity = pki.broker_identity()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:  # ssl loads keys from files only
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert.write_bytes(identity.cert_pem)
            key.write_bytes(identity.key_pem)
            context.load_cert_chain(cert, key)
        context.load_verify_locations(cadata=ca.cert_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL  # a join has no certificate yet; a renewal has one
        self.socket = context.wrap_socket(self.socket, server_side=True)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="joinserver", daemon=True)
        thread.start()
        return thread
