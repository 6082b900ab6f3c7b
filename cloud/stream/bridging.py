"""What the exec, attach and port-forward bridges share: finding the pod's node, opening a tunnel stream and
waiting for the node to accept it, and refusing an upgrade request.

A refusal of an upgrade request goes back with its real code and a metav1.Status body: the API server
(v1.20) echoes a kubelet's non-101 answer to an upgrade to the client unchanged, and kubectl prints the
Status's message (``error: pod default/x is not on node edge-1``) and exits 1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from http import HTTPStatus

from cloud.kube import Kube, KubeError
from cloud.stream.tunnel import CloudStream, Tunnel
from runtime.streamflow import StreamEnded
from schemas.streamrequest import RequestRefused

_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 429: "TooManyRequests", 503: "ServiceUnavailable",
            504: "Timeout"}


def refusal(code: int, message: str) -> bytes:
    """A complete HTTP answer refusing an upgrade: ``code`` and a Status naming why."""
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": _REASONS.get(code, "InternalError"), "code": code}).encode()
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    head = (f"HTTP/1.1 {code} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("latin-1") + body


def send_refusal(sock: socket.socket, code: int, message: str) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(refusal(code, message))


def pod_node(kube: Kube, namespace: str, pod: str) -> str:
    """The node the API server has the pod on; RequestRefused (404, 503) when it has none."""
    try:
        found = kube.get_pod(namespace, pod)
    except KubeError as exc:
        raise RequestRefused(503, f"cannot read pod {namespace}/{pod}: {exc}") from exc
    node = ((found or {}).get("spec") or {}).get("nodeName")
    if found is None or not node:
        raise RequestRefused(404, f"pod {namespace}/{pod} is not on any node")
    return str(node)


def open_accepted(tunnel: Tunnel, node: str, request: dict[str, object], timeout_s: float) -> CloudStream:
    """A stream the node has accepted (it found the pod and started the command or connection); StreamEnded
    with the node's code and reason when it refused, or when it did not answer in time (504)."""
    stream = tunnel.open(node, request)
    deadline = time.monotonic() + timeout_s
    while not stream.accepted.wait(0.05):
        ended = stream.inbox.ended
        if ended is not None:
            tunnel.finish(stream, "refused")
            raise StreamEnded(ended.code if ended.code != 200 else 502, ended.reason)
        if time.monotonic() > deadline:
            tunnel.finish(stream, "not answered")
            raise StreamEnded(504, f"node {node} did not answer within {timeout_s:g} s")
    return stream
