"""The objects of ``metrics.k8s.io/v1beta1`` as metrics-server writes them, and the discovery documents.

``NodeMetrics`` and ``PodMetrics`` carry the object's name, namespace and labels (from the API server's
Node or Pod), ``timestamp`` (the later reading's time), ``window`` (the time between the readings) and
``usage``: CPU in nanocores (``123456n``) and memory in bytes, in Ki when whole (metrics-server's
spellings, which ``kubectl top`` parses as quantities).
"""

from __future__ import annotations

from typing import Any

from cloud.metricsapi.store import PodUsage, Usage
from schemas.timefmt import rfc3339

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"


def quantity_cpu(nanocores: int) -> str:
    return f"{max(nanocores, 0)}n"


def quantity_memory(size: int) -> str:
    return f"{size // 1024}Ki" if size % 1024 == 0 else str(size)


def _window(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _usage(u: Usage) -> dict[str, str]:
    return {"cpu": quantity_cpu(u.cpu_nanocores), "memory": quantity_memory(u.memory_bytes)}


def _metadata(obj: dict[str, Any], namespaced: bool) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {"name": meta.get("name", ""), "creationTimestamp": meta.get("creationTimestamp")}
    if namespaced:
        out["namespace"] = meta.get("namespace", "")
    if meta.get("labels"):
        out["labels"] = meta["labels"]
    return out


def node_metrics(node: dict[str, Any], u: Usage) -> dict[str, Any]:
    return {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION, "metadata": _metadata(node, False),
            "timestamp": rfc3339(u.at), "window": _window(u.window_s), "usage": _usage(u)}


def pod_metrics(pod: dict[str, Any], u: PodUsage) -> dict[str, Any]:
    containers = [{"name": name, "usage": _usage(c)} for name, c in sorted(u.containers.items())]
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION, "metadata": _metadata(pod, True),
            "timestamp": rfc3339(u.at), "window": _window(u.window_s), "containers": containers}


def metrics_list(kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": f"{kind}List", "apiVersion": GROUP_VERSION, "metadata": {},
            "items": [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items]}


def resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]}


def api_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [version],
            "preferredVersion": version}


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": reason, "code": code}
    if details:
        out["details"] = {**details, "group": GROUP}
    return out
