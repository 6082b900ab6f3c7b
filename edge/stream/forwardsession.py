"""One forwarded connection at the node: bytes between the cloud and a port of a pod on this node.

The pod must be on this node (EdgeD's labels, as for logs and exec: any other is refused, 404). Its address
is its sandbox's, read from podman (the infra container's network settings, what EdgeD reports as
``status.podIP``); a pod on the host's network is reached on 127.0.0.1. Unlike the kubelet, which enters the
pod's network namespace and dials localhost there, the node's stream end dials the pod's address from the
host: a port the pod binds to its own loopback only is not reachable (the kubelet would reach it); entering
namespaces takes privileges the stream end does not otherwise need.

The stream is accepted (the first credit frame) once the connection to the port is made, so kubectl shows a
refused port as that connection's error.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote, urlencode

from edge.podlabels import NAMESPACE_LABEL, NODE_LABEL, POD_LABEL
from edge.stream.podmanapi import API, PodmanApi, PodmanApiError
from edge.stream.podmanexec import call
from edge.stream.socketsession import SocketSession
from edge.stream.streamsession import Publish
from runtime.streamflow import SendWindow
from schemas.execrequest import ForwardRequest
from schemas.streamframe import CHUNK, Kind

CONNECT_TIMEOUT_S = 5.0


def pod_address(api: PodmanApi, node: str, namespace: str, pod: str) -> str:
    """The address of a pod on this node; PodmanApiError 404 when it is not here, 503 when it has none."""
    labels = [f"{NODE_LABEL}={node}", f"{NAMESPACE_LABEL}={namespace}", f"{POD_LABEL}={pod}"]
    status, found = call(api, "GET", f"{API}/containers/json?" + urlencode(
        {"all": "true", "filters": json.dumps({"label": labels})}))
    pods = {str(item.get("Pod")) for item in found if isinstance(item, dict) and item.get("Pod")} \
        if status == 200 and isinstance(found, list) else set()
    if not pods:
        raise PodmanApiError(404, f"pod {namespace}/{pod} is not on node {node}")
    status, sandbox = call(api, "GET", f"{API}/pods/{quote(sorted(pods)[0])}/json")
    infra = sandbox.get("InfraContainerID") if status == 200 and isinstance(sandbox, dict) else None
    if not infra:
        raise PodmanApiError(503, f"pod {namespace}/{pod} has no sandbox on node {node}")
    status, inspected = call(api, "GET", f"{API}/containers/{quote(str(infra))}/json")
    if status != 200 or not isinstance(inspected, dict):
        raise PodmanApiError(503, f"cannot inspect the sandbox of pod {namespace}/{pod}")
    if ((inspected.get("HostConfig") or {}).get("NetworkMode")) == "host":
        return "127.0.0.1"
    settings = inspected.get("NetworkSettings") or {}
    addresses = [settings.get("IPAddress")] + [n.get("IPAddress") for n in (settings.get("Networks") or {}).values()]
    address = next((str(a) for a in addresses if a), "")
    if not address:
        raise PodmanApiError(503, f"pod {namespace}/{pod} has no address yet")
    return address


class ForwardSession(SocketSession):
    def __init__(self, api: PodmanApi, node: str, sid: str, request: ForwardRequest, window: SendWindow,
                 publish: Publish) -> None:
        super().__init__(api, node, sid, window, publish)
        self.request = request

    def serve(self) -> None:
        r = self.request
        address = pod_address(self.api, self.node, r.namespace, r.pod)
        try:
            sock = socket.create_connection((address, r.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise PodmanApiError(502, f"cannot connect to port {r.port} of pod {r.namespace}/{r.pod} "
                                      f"({address}): {exc}") from exc
        sock.settimeout(None)
        if not self.accept(sock):
            return
        with sock:
            while True:
                try:
                    data = sock.recv(CHUNK)
                except OSError:
                    break
                if not data:
                    break
                self.send(data)
        if not self.stop.is_set():
            self.publish(self.frame(Kind.CLOSE, code=200, reason="the pod closed the connection"))
