"""May this user read these metrics? Asked of the API server (a SubjectAccessReview), as every aggregated
API server asks: the aggregation layer authenticates but does not authorize what it proxies, so a user
whom RBAC gives no ``get`` on ``pods.metrics.k8s.io`` is refused here, with the API server's reason.
Answers are kept ``ttl_s`` (kubectl top asks discovery, then the list, within a second).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cloud.kube import Kube
from cloud.metricsapi.frontproxy import User
from cloud.metricsapi.objects import GROUP


@dataclass(frozen=True)
class Attributes:
    verb: str  # get, list
    resource: str  # nodes, pods
    namespace: str = ""
    name: str = ""


class Authorizer:
    def __init__(self, kube: Kube, ttl_s: float = 10.0) -> None:
        self.kube = kube
        self.ttl_s = ttl_s
        self._seen: dict[tuple[object, ...], tuple[float, bool, str]] = {}
        self._lock = threading.Lock()

    def allowed(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        key = (user.name, user.groups, tuple(sorted((k, tuple(v)) for k, v in user.extra.items())), attrs)
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1], hit[2]
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": user.name, "groups": list(user.groups), "extra": user.extra,
            "resourceAttributes": {"group": GROUP, "version": "v1beta1", "resource": attrs.resource,
                                   "verb": attrs.verb, "namespace": attrs.namespace, "name": attrs.name}}}
        answer = self.kube.request_json("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
        result = answer.get("status") or {}
        allowed, reason = bool(result.get("allowed")), str(result.get("reason") or "")
        with self._lock:
            self._seen[key] = (now, allowed, reason)
        return allowed, reason
