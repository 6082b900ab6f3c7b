"""The paths of ``metrics.k8s.io/v1beta1`` and their answers.

Lists take ``labelSelector`` and ``fieldSelector`` as metrics-server does: they select among the Nodes or
Pods the API server has (it checks the selectors, and its refusal of a bad one is passed on), and an object
without metrics yet is left out of a list and is 404 when asked for by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote

from cloud.kube import Kube, KubeError
from cloud.metricsapi import objects
from cloud.metricsapi.authz import Attributes
from cloud.metricsapi.store import MetricsStore, PodUsage

PREFIX = f"/apis/{objects.GROUP_VERSION}"


@dataclass(frozen=True)
class Route:
    resource: str  # "" for discovery
    namespace: str = ""
    name: str = ""

    @property
    def attributes(self) -> Attributes:
        return Attributes("get" if self.name else "list", self.resource, self.namespace, self.name)


def route(path: str) -> Route | None:
    """The metrics a path asks for; Route("") for discovery, None for a path not served."""
    path = path.rstrip("/")
    if path in (PREFIX, f"/apis/{objects.GROUP}"):
        return Route("")
    if not path.startswith(PREFIX + "/"):
        return None
    parts = path[len(PREFIX) + 1:].split("/")
    match parts:
        case ["nodes"]:
            return Route("nodes")
        case ["nodes", name]:
            return Route("nodes", name=name)
        case ["pods"]:
            return Route("pods")
        case ["namespaces", namespace, "pods"]:
            return Route("pods", namespace)
        case ["namespaces", namespace, "pods", name]:
            return Route("pods", namespace, name)
    return None


def _selectors(query: str) -> dict[str, str]:
    params = parse_qs(query)
    return {k: params[k][-1] for k in ("labelSelector", "fieldSelector") if params.get(k)}


class Answers:
    def __init__(self, kube: Kube, store: MetricsStore) -> None:
        self.kube = kube
        self.store = store

    def answer(self, path: str, r: Route, query: str) -> tuple[int, dict[str, Any]]:
        if not r.resource:
            return 200, objects.api_group() if path.rstrip("/") == f"/apis/{objects.GROUP}" else objects.resource_list()
        try:
            return self._nodes(r, query) if r.resource == "nodes" else self._pods(r, query)
        except KubeError as exc:
            code = exc.status if 400 <= exc.status < 500 else 503
            return code, objects.status(code, "BadRequest" if code == 400 else "ServiceUnavailable", str(exc))

    def _not_found(self, r: Route) -> tuple[int, dict[str, Any]]:
        kind = "nodemetrics" if r.resource == "nodes" else "podmetrics"
        return 404, objects.status(404, "NotFound", f'{kind}.{objects.GROUP} "{r.name}" not found',
                                   {"name": r.name, "kind": r.resource})

    def _nodes(self, r: Route, query: str) -> tuple[int, dict[str, Any]]:
        if r.name:
            node = self._get(f"/api/v1/nodes/{quote(r.name)}")
            u = None if node is None else self.store.node(r.name)
            return (200, objects.node_metrics(node, u)) if node is not None and u is not None else self._not_found(r)
        nodes = self.kube.request_json("GET", "/api/v1/nodes", query=_selectors(query)).get("items") or []
        items = [objects.node_metrics(n, u) for n in nodes if (u := self.store.node(n["metadata"]["name"]))]
        return 200, objects.metrics_list("NodeMetrics", items)

    def _pods(self, r: Route, query: str) -> tuple[int, dict[str, Any]]:
        usages = self.store.pods()
        if r.name:
            pod = self._get(f"/api/v1/namespaces/{quote(r.namespace)}/pods/{quote(r.name)}")
            u = None if pod is None else _usage_of(pod, usages)
            return (200, objects.pod_metrics(pod, u)) if pod is not None and u is not None else self._not_found(r)
        path = f"/api/v1/namespaces/{quote(r.namespace)}/pods" if r.namespace else "/api/v1/pods"
        pods = self.kube.request_json("GET", path, query=_selectors(query)).get("items") or []
        items = [objects.pod_metrics(p, u) for p in pods if (u := _usage_of(p, usages))]
        return 200, objects.metrics_list("PodMetrics", items)

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.kube.request_json("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


def _usage_of(pod: dict[str, Any], usages: dict[tuple[str, str], PodUsage]) -> PodUsage | None:
    """The pod's usage, as reported by the node the API server has it on (no other node's word counts)."""
    meta = pod.get("metadata") or {}
    u = usages.get((str(meta.get("namespace", "")), str(meta.get("name", ""))))
    return u if u is not None and u.node == (pod.get("spec") or {}).get("nodeName") else None
