"""The cloud stream server: the kubelet endpoint of every edge node, tunnelling to the nodes over their links.

How the API server reaches it (README "kubectl logs, exec and top of edge pods"):

- The embedded stack (``edgehive up``, tests): EdgeController is given ``--stream-address HOST:PORT`` and
  writes it into each edge node's status (cloud/kubeletendpoint.py: the ``Hostname`` address and
  ``daemonEndpoints.kubeletEndpoint.Port``); the API server, run with
  ``--kubelet-preferred-address-types=Hostname,...`` (the default order, made explicit) and the
  kubelet client certificate and CA flags, dials this server for any edge node.
- A user's cluster: the same, with no flag to change as long as the API server keeps kube-apiserver's default
  address order (Hostname first) and can reach HOST:PORT. kubeadm and k3s put InternalIP first: there, either
  that flag changes, or KubeEdge's way applies: a DNAT rule on the API server's host from each edge node's
  InternalIP and the advertised port to this server. In both cases this server accepts only the API server's
  kubelet client certificate, and serves a certificate the API server accepts (cloud/stream/servingtls.py
  says where both come from).

Why not an egress selector with HTTP CONNECT: it exists only where we set the API server's flags (never
on a user's cluster) and would have to be configured for each API server version's egress quirks; the
node address works the same on both, through the API alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cloud.kube import Kube
from cloud.stream.https import StreamHttpServer
from cloud.stream.servingtls import TlsSources, private_folder, server_tls
from cloud.stream.tunnel import Tunnel
from runtime.address import Address
from runtime.bus import Bus
from runtime.component import ComponentSettings
from runtime.cpupriority import check_nice, lower_priority, nice_field
from runtime.streamflow import DEFAULT_WINDOW

log = logging.getLogger(__name__)

MODULE = "stream"
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"


@dataclass(frozen=True)
class StreamServerSettings(ComponentSettings):
    node: str = field(default="cloud", metadata={"help": "name used on messages that concern no node"})
    broker: str = field(default="mqtt://cloud:cloud@127.0.0.1:1883", metadata={"help": "the cloud broker URL"})
    kubeconfig: str | None = field(default=None, metadata={"help": "kubeconfig file (default: in-cluster)"})
    kube_server: str | None = field(default=None, metadata={"help": "API server URL instead of the kubeconfig's"})
    listen: str = field(default="0.0.0.0:10350", metadata={
        "help": "HOST:PORT of the kubelet API the API server calls (the port every edge node advertises)"})
    tls_cert: str = field(default="", metadata={
        "help": "serving certificate (PEM), valid for the advertised host (default: issued at start, see "
                "--serving-ca)"})
    tls_key: str = field(default="", metadata={"help": "its key (PEM)"})
    serving_ca: str = field(default="", metadata={
        "help": "issue the serving certificate at start from this CA (PEM): the one the API server's "
                "--kubelet-certificate-authority names; default: the cluster's edgehive CA, enough for an API "
                "server without that flag"})
    serving_ca_key: str = field(default="", metadata={"help": "its key (PEM)"})
    server_names: str = field(default="", metadata={
        "help": "comma-separated names for an issued serving certificate (DNS:NAME, IP:ADDR): the host the nodes "
                "advertise (EdgeController --stream-address); default: the --listen host; localhost and "
                "127.0.0.1 always"})
    client_ca: str = field(default="", metadata={
        "help": "CA of the API server's kubelet client certificate (default: the API server's client CA, from "
                "ConfigMap kube-system/extension-apiserver-authentication)"})
    client_cn: str = field(default=APISERVER_KUBELET_CLIENT, metadata={
        "help": "the CN of the API server's kubelet client certificate, the only client allowed (comma-separated "
                "for several; k3s names it system:apiserver)"})
    max_streams_per_node: int = field(default=16, metadata={"help": "streams open at once to one node"})
    window: int = field(default=DEFAULT_WINDOW, metadata={"help": "bytes a node may send ahead of the reader"})
    idle_timeout_s: float = field(default=30.0, metadata={
        "help": "seconds without a frame from a node before its stream is ended"})
    open_timeout_s: float = field(default=10.0, metadata={"help": "seconds for a node to answer a new stream"})
    nice: int = nice_field()

    def __post_init__(self) -> None:
        super().__post_init__()
        Address.parse(self.listen, any_host=True)
        self.tls_sources().check()
        check_nice(self.nice)
        if self.max_streams_per_node < 1 or self.window < 65536 or self.idle_timeout_s <= 0:
            raise ValueError("max-streams-per-node must be at least 1, window at least 65536, idle-timeout-s > 0")

    def tls_sources(self) -> TlsSources:
        return TlsSources(self.tls_cert, self.tls_key, self.serving_ca, self.serving_ca_key, self.client_ca,
                          self.server_names, Address.parse(self.listen, any_host=True).host, self.client_cn)


class StreamServer:
    def __init__(self, settings: StreamServerSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.tunnel = Tunnel(bus, max_per_node=settings.max_streams_per_node, window=settings.window,
                             idle_s=settings.idle_timeout_s)
        listen = Address.parse(settings.listen, any_host=True)
        self.kube = Kube.connect(settings.kubeconfig, settings.kube_server)
        self._tls_files = private_folder()
        tls = server_tls(settings.tls_sources(), self.kube, Path(self._tls_files.name))
        self.http = StreamHttpServer((listen.bind_host, listen.port), tls, self.kube, self.tunnel,
                                     settings.open_timeout_s)

    def start(self) -> None:
        lower_priority(self.settings.nice)
        self.tunnel.start()
        self.http.serve()
        log.info("kubelet API for edge nodes on %s:%d", *self.http.server_address[:2])

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.tunnel.close()
        self.kube.close()
        self._tls_files.cleanup()

    def report(self) -> dict[str, object]:
        return self.tunnel.report()
