"""The metrics API as a process: a small aggregated API server of our own for ``metrics.k8s.io/v1beta1``.

Why not metrics-server: it is a Go image from a registry this project cannot rely on (no Docker Hub here,
and an edge user's cloud host may have none either), and it scrapes each kubelet at the node's own address,
which an edge node behind NAT does not have. What it does is small: scrape ``/metrics/resource``, keep two
readings, serve rates. This process does the same, reading each edge node through the API server's node
proxy (so through the cloud stream server and the node's link, cloud/metricsapi/scraper.py), and is
registered as metrics-server is, with an APIService (cloud/metricsapi/registration.py), so that
``kubectl top node`` and ``kubectl top pod`` work unchanged.

The API server must run with its aggregation flags (``--requestheader-*``, ``--proxy-client-cert-file``,
``--proxy-client-key-file``; edgehive/localcluster.py sets them, as kubeadm does) and, without kube-proxy,
``--enable-aggregator-routing=true``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud.kube import Kube
from cloud.metricsapi import registration
from cloud.metricsapi.authz import Authorizer
from cloud.metricsapi.frontproxy import FrontProxy
from cloud.metricsapi.routes import Answers
from cloud.metricsapi.scraper import Scraper
from cloud.metricsapi.server import MetricsHttpServer, tls_context
from cloud.metricsapi.store import MetricsStore
from cloud.servingcert import issue_serving_cert
from runtime.address import Address
from runtime.bus import Bus
from runtime.component import ComponentSettings
from schemas.kubeobj import EDGE_ROLE_LABEL

log = logging.getLogger(__name__)

MODULE = "metricsapi"


@dataclass(frozen=True)
class MetricsApiSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={"help": "API server URL instead of the kubeconfig's"})
    listen: str = field(default="0.0.0.0:4443", metadata={
        "help": "HOST:PORT of the HTTPS server the API server calls; port 0 takes a free one (it is registered)"})
    advertise_address: str = field(default="", metadata={
        "help": "the address written in the Endpoints, not a loopback one (default: this host's, on its "
                "default route)"})
    scrape_interval_s: float = field(default=15.0, metadata={"help": "seconds between two scrapes of a node"})
    scrape_timeout_s: float = field(default=10.0, metadata={"help": "seconds a node has to answer a scrape"})
    node_selector: str = field(default=EDGE_ROLE_LABEL, metadata={
        "help": "label selector of the nodes to scrape (default: the edge nodes)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scrape_interval_s <= 0 or self.scrape_timeout_s <= 0:
            raise ValueError("scrape-interval-s and scrape-timeout-s must be positive")
        _listen(self.listen)


def _listen(text: str) -> tuple[str, int]:
    if text.endswith(":0"):
        return Address.parse(text[:-2] + ":1", any_host=True).bind_host, 0
    address = Address.parse(text, any_host=True)
    return address.bind_host, address.port


class MetricsApi:
    def __init__(self, settings: MetricsApiSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        # Two intervals and a timeout without a scrape: the node's figures are stale, and dropped.
        self.store = MetricsStore(stale_s=2 * settings.scrape_interval_s + settings.scrape_timeout_s)
        self.scraper = Scraper(self.kube, self.store, interval_s=settings.scrape_interval_s,
                               node_selector=settings.node_selector, timeout_s=settings.scrape_timeout_s)
        self.address = settings.advertise_address or registration.host_address()
        self._certs = tempfile.TemporaryDirectory(prefix="edgehive-metricsapi-")
        self.http: MetricsHttpServer | None = None

    @property
    def port(self) -> int:
        return int(self.http.server_address[1]) if self.http is not None else 0

    def start(self) -> None:
        front_proxy = FrontProxy.read(self.kube)
        ca, key, cert = issue_serving_cert(self.kube, "edgehive-metricsapi", registration.server_names())
        folder = Path(self._certs.name)
        (folder / "tls.key").write_bytes(key)
        (folder / "tls.crt").write_bytes(cert)
        self.http = MetricsHttpServer(_listen(self.settings.listen), Answers(self.kube, self.store), front_proxy,
                                      Authorizer(self.kube))
        self.http.secure(tls_context(str(folder / "tls.crt"), str(folder / "tls.key"), front_proxy))
        self.http.serve()
        self.scraper.start()
        registration.register(self.kube, self.address, self.port, ca.cert_pem)

    def report(self) -> dict[str, Any]:
        return {"port": self.port, "address": self.address, "nodes_failing": sorted(self.scraper.failures)}

    def close(self) -> None:
        registration.unregister(self.kube)
        self.scraper.close()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self._certs.cleanup()
        self.kube.close()
