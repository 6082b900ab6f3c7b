"""How the API server finds the metrics API: an APIService for ``v1beta1.metrics.k8s.io`` backed by a Service
and its Endpoints, which this process writes itself at start (and removes at a clean stop).

The Service has no selector: its Endpoints name this process's host address and port. With
``--enable-aggregator-routing=true`` the API server dials that endpoint directly; without it, it dials the
Service's ClusterIP, which needs kube-proxy, which the embedded stack does not run. An Endpoints address may
not be a loopback one (the API validates it), so the host's own address is advertised: by default the one
the host would send from on its default route.

The serving certificate is verified against the APIService's ``caBundle`` for the name
``edgehive-metrics.kube-system.svc``, whatever address is dialled.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
from typing import Any

from cloud.kube import MERGE, Kube, KubeError
from cloud.metricsapi.objects import GROUP, VERSION

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
SERVICE = "edgehive-metrics"
API_SERVICE = f"{VERSION}.{GROUP}"
PORT_NAME = "https"
MANAGED = {"app.kubernetes.io/managed-by": "edgehive"}


def server_names() -> list[str]:
    base = f"{SERVICE}.{NAMESPACE}"
    return [f"DNS:{base}", f"DNS:{base}.svc", f"DNS:{base}.svc.cluster.local"]


def host_address() -> str:
    """The address this host sends from on its default route (no packet is sent: a UDP socket's connect only
    picks the route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: routed by the default route here
            return str(probe.getsockname()[0])
        except OSError as exc:
            raise ValueError(f"no default route to find this host's address ({exc}): pass --advertise-address") \
                from None


def service(port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "labels": MANAGED},
            "spec": {"ports": [{"name": PORT_NAME, "port": 443, "targetPort": port, "protocol": "TCP"}]}}


def endpoints(address: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": SERVICE, "labels": MANAGED},
            "subsets": [{"addresses": [{"ip": address}],
                         "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}]}


def api_service(ca_pem: bytes) -> dict[str, Any]:
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": API_SERVICE, "labels": MANAGED},
            "spec": {"service": {"namespace": NAMESPACE, "name": SERVICE, "port": 443}, "group": GROUP,
                     "version": VERSION, "caBundle": base64.b64encode(ca_pem).decode(),
                     "groupPriorityMinimum": 100, "versionPriority": 100}}


def _apply(kube: Kube, collection: str, body: dict[str, Any]) -> None:
    """Create, or merge ``body`` into the object of that name."""
    try:
        kube.request("POST", collection, body=body)
    except KubeError as exc:
        if exc.status != 409:
            raise
        kube.request("PATCH", f"{collection}/{body['metadata']['name']}", body=body, content_type=MERGE)


def register(kube: Kube, address: str, port: int, ca_pem: bytes) -> None:
    core = f"/api/v1/namespaces/{NAMESPACE}"
    _apply(kube, f"{core}/services", service(port))
    _apply(kube, f"{core}/endpoints", endpoints(address, port))
    _apply(kube, "/apis/apiregistration.k8s.io/v1/apiservices", api_service(ca_pem))
    log.info("APIService %s registered: %s:%d (Service %s/%s)", API_SERVICE, address, port, NAMESPACE, SERVICE)


def unregister(kube: Kube) -> None:
    """At a clean stop: an APIService whose server is gone makes every client's discovery report an error."""
    with contextlib.suppress(KubeError):
        kube.request("DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{API_SERVICE}")
