"""A node's resource metrics asked through the stream tunnel: the kubelet's ``/metrics/resource`` and
``/stats/summary``, parsed once where the API server's request enters the stream server.

Unlike ``/containerLogs``, these paths do not name the node: every edge node's kubelet endpoint is the one
stream server. The API server's node proxy (``/api/v1/nodes/NODE/proxy/...``, which ``kubectl get --raw``
and the metrics API use) names it in the ``X-Forwarded-Uri`` header it adds to every proxied request
(seen on kube-apiserver v1.20.2: ``X-Forwarded-Uri: /api/v1/nodes/NODE/proxy/metrics/resource``). Only the
API server's client certificate reaches this parsing, so the header is the API server's word.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from schemas.fields import STRICT, BodyError
from schemas.names import is_node_name
from schemas.streamrequest import RequestRefused

METRICS = "metrics"
NODE_PROXY_PREFIX = "/api/v1/nodes/"
MAX_BODY = 16 * 1024 * 1024
"""The largest metrics answer the cloud takes from a node (a summary of hundreds of pods is well below)."""


class MetricsKind(StrEnum):
    RESOURCE = "resource"  # GET /metrics/resource: Prometheus text
    SUMMARY = "summary"  # GET /stats/summary: the kubelet's Summary JSON

    @property
    def content_type(self) -> str:
        return "text/plain; version=0.0.4; charset=utf-8" if self == MetricsKind.RESOURCE else "application/json"


PATHS = {"/metrics/resource": MetricsKind.RESOURCE, "/stats/summary": MetricsKind.SUMMARY}


@dataclass(frozen=True, slots=True)
class MetricsRequest:
    kind: MetricsKind

    def as_map(self) -> dict[str, Any]:
        return {"op": METRICS, "kind": self.kind.value}

    @classmethod
    def parse(cls, value: Any) -> MetricsRequest:
        """The ``req`` of an ``open`` frame (BodyError names the field)."""
        body = STRICT.body(value, "req")
        if body.get("op") != METRICS:
            raise BodyError("req.op", f"must be {METRICS!r}")
        try:
            return cls(MetricsKind(str(body.get("kind"))))
        except ValueError:
            raise BodyError("req.kind", f"must be one of {', '.join(MetricsKind)}") from None


def metrics_kind(path: str) -> MetricsKind | None:
    """The metrics a kubelet path asks for; None for a path that is not a metrics path (``/stats/summary/``
    and ``/stats/summary`` are one, as on the kubelet)."""
    return PATHS.get(path.rstrip("/") or "/")


def proxied_node(forwarded_uri: str | None) -> str:
    """The node an API server's node-proxy request is for, from its ``X-Forwarded-Uri``; RequestRefused (400)
    when there is none: a request that does not come through the node proxy cannot say which node it means.

    The proxy's node segment may carry a scheme and port (``https:NODE:10250``), which are not the name."""
    if not forwarded_uri or not forwarded_uri.startswith(NODE_PROXY_PREFIX):
        raise RequestRefused(400, "metrics are served per node through the API server's node proxy "
                                  "(/api/v1/nodes/NODE/proxy/metrics/resource): this request names no node")
    segment = unquote(forwarded_uri[len(NODE_PROXY_PREFIX):].split("/", 1)[0])
    parts = segment.split(":")
    scheme_or_port = len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https"))
    name = parts[1] if scheme_or_port else parts[0]
    if not is_node_name(name):
        raise RequestRefused(400, f"{segment!r} is not a node name")
    return name
