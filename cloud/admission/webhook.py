"""The webhook as a process: an HTTPS server for the API server's AdmissionReviews, and its registration.

At start it issues itself a serving certificate from the cluster CA (cloud/clusterpki.py; nothing is
stored: each start issues a new one, and the caBundle, the CA, stays the same) and applies its
MutatingWebhookConfiguration with that CA, so that an API server anywhere (the embedded one, a
user's k3s or kubeadm cluster) calls it without any flag of its own.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cloud.admission.review import OPT_OUT, answer_bytes
from cloud.kube import Kube, KubeError
from cloud.servingcert import issue_serving_cert
from runtime.address import Address
from runtime.bus import Bus
from runtime.component import ComponentSettings

log = logging.getLogger(__name__)

MODULE = "admission"
PATH = "/mutate"
MAX_BODY = 4 * 1024 * 1024
NODE_CACHE_S = 10.0


@dataclass(frozen=True)
class AdmissionSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={
        "help": "API server URL to use instead of the kubeconfig's (k3s writes https://127.0.0.1:6443)"})
    listen: str = field(default="0.0.0.0:8443", metadata={
        "help": "HOST:PORT the HTTPS server listens on; port 0 takes a free one (registered with the default url)"})
    url: str | None = field(default=None, metadata={
        "help": "the URL the API server calls (default https://127.0.0.1:PORT/mutate, for an API server on this "
                "host); ignored with --service"})
    service: str | None = field(default=None, metadata={
        "help": "NAMESPACE/NAME:PORT of the Service in front of this webhook, when it runs in the cluster"})
    webhook_name: str = field(default="edgehive-autonomy", metadata={
        "help": "name of the MutatingWebhookConfiguration it applies"})
    timeout_s: int = field(default=5, metadata={"help": "how long the API server waits for an answer (1-30)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        listen_address(self.listen)
        if not 1 <= self.timeout_s <= 30:
            raise ValueError(f"timeout_s must be 1 to 30 (the API's limits), not {self.timeout_s}")
        if self.service is not None:
            _service_ref(self.service)


def listen_address(text: str) -> tuple[str, int]:
    """(host to bind, port) of ``--listen``; port 0 lets the system choose (the embedded stack's choice: the
    webhook registers the URL it really listens on, so no port has to be configured or kept free)."""
    if text.endswith(":0"):
        return Address.parse(text[:-2] + ":1").bind_host, 0
    address = Address.parse(text)
    return address.bind_host, address.port


def _service_ref(text: str) -> dict[str, Any]:
    namespace, _, rest = text.partition("/")
    name, _, port = rest.partition(":")
    if not namespace or not name or not port.isdigit():
        raise ValueError(f"service {text!r}: write NAMESPACE/NAME:PORT")
    return {"namespace": namespace, "name": name, "port": int(port), "path": PATH}


def client_config(settings: AdmissionSettings, ca_pem: bytes, port: int) -> dict[str, Any]:
    config: dict[str, Any] = {"caBundle": base64.b64encode(ca_pem).decode()}
    if settings.service:
        config["service"] = _service_ref(settings.service)
    else:
        config["url"] = settings.url or f"https://127.0.0.1:{port}{PATH}"
    return config


def server_names(settings: AdmissionSettings) -> list[str]:
    """The names the serving certificate must carry: the host the API server calls."""
    if settings.service:
        ref = _service_ref(settings.service)
        base = f"{ref['name']}.{ref['namespace']}"
        return [f"DNS:{base}", f"DNS:{base}.svc", f"DNS:{base}.svc.cluster.local"]
    host = urlsplit(settings.url).hostname if settings.url else None
    names = {"DNS:localhost", "IP:127.0.0.1"}
    if host:
        try:
            names.add(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.add(f"DNS:{host}")
    return sorted(names)


def webhook_configuration(name: str, client: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    """failurePolicy Ignore: every pod of the cluster passes through this webhook, and one that is down (the
    cloud side restarting, its host unreachable) must never stop pods from being created, kube-system's
    included; what a pod created meanwhile misses is only its forever tolerations. The opt-out label skips
    the call for a namespace or a pod; sideEffects None: a review changes nothing but its answer."""
    opted_out = {"matchExpressions": [{"key": OPT_OUT, "operator": "NotIn", "values": ["true"]}]}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "edgehive"}},
        "webhooks": [{
            "name": "autonomy.edgehive.io",
            "clientConfig": client,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                       "scope": "Namespaced"}],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": timeout_s,
            "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": opted_out,
            "objectSelector": opted_out,
        }],
    }


class NodeLabelCache:
    """Nodes' labels for the reviews, read from the API server at most every NODE_CACHE_S per node."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, dict[str, str] | None]] = {}

    def __call__(self, name: str) -> dict[str, str] | None:
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(name)
        if hit is not None and now - hit[0] < NODE_CACHE_S:
            return hit[1]
        node = self.kube.get_node(name)
        labels = None if node is None else dict((node.get("metadata") or {}).get("labels") or {})
        with self._lock:
            self._seen[name] = (now, labels)
        return labels


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if self.path.split("?")[0] != PATH:
            self._send(404, b"not found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self._send(400, b"an AdmissionReview body is required (at most 4 MiB)")
            return
        try:
            status, body = answer_bytes(self.rfile.read(length), self.server.nodes)
        except KubeError as exc:  # a node could not be read: allowed unchanged (failurePolicy Ignore does as much)
            log.warning("review not made: %s", exc)
            status, body = 500, f"edgehive: {exc}".encode()
        self.server.counted(status)
        self._send(status, body, "application/json" if status == 200 else "text/plain")

    def do_GET(self) -> None:
        self._send(200 if self.path == "/healthz" else 404, b"ok" if self.path == "/healthz" else b"not found")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], nodes: NodeLabelCache, bus: Bus) -> None:
        super().__init__(address, _Handler)
        self.nodes = nodes
        self.bus = bus

    def counted(self, status: int) -> None:
        self.bus.counters.inc("reviews" if status == 200 else "reviews_refused")


class AdmissionWebhook:
    def __init__(self, settings: AdmissionSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        self.server = _Server(listen_address(settings.listen), NodeLabelCache(self.kube), bus)
        self._thread = threading.Thread(target=self.server.serve_forever, name="https", daemon=True)
        self._certs = tempfile.TemporaryDirectory(prefix="edgehive-admission-")

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        ca, key, cert = issue_serving_cert(self.kube, "edgehive-admission", server_names(self.settings))
        folder = Path(self._certs.name)
        (folder / "tls.key").write_bytes(key)
        (folder / "tls.crt").write_bytes(cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._thread.start()
        config = webhook_configuration(self.settings.webhook_name,
                                       client_config(self.settings, ca.cert_pem, self.port), self.settings.timeout_s)
        self.kube.apply_mutating_webhook(config)
        log.info("serving AdmissionReviews on port %d; MutatingWebhookConfiguration %s applied (%s)", self.port,
                 self.settings.webhook_name, config["webhooks"][0]["clientConfig"].get("url", "service"))

    def report(self) -> dict[str, Any]:
        return {"port": self.port, "webhook": self.settings.webhook_name}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._certs.cleanup()
        self.kube.close()
