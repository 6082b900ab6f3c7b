"""Pod admission as kubelet's: a new pod's requests must fit beside what the node's admitted pods requested.

The scheduler checks the same sums, but a pod bound by ``spec.nodeName`` (or a
scheduler that saw an older picture) passes it by; kubelet then fails the pod,
phase Failed with reason ``OutOf<resource>``, and so does EdgeD. A pod once
admitted stays admitted (it runs, or its containers are restarted in its
resources) until it ends; a pod once rejected stays Failed, even if room is made.
Pods found running in podman when EdgeD starts were admitted before, and are again.

Limits podman cannot enforce are refused here: ephemeral-storage (podman's size
option needs a project quota, which overlay over ext4 lacks) and hugepages.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.edged.podfields import FieldRefused
from edge.edged.podspec import parse_quantity

Requests = dict[str, int]
"""Resource name -> amount in the unit kubelet compares: millicores for cpu, bytes or counts for the rest."""

LIMITED = ("cpu", "memory")
"""Limits podman enforces (cgroup cpu quota and memory limit)."""


@dataclass(frozen=True)
class Rejection:
    reason: str
    message: str


def _amount(resource: str, quantity: Any, path: str) -> int:
    value = parse_quantity(quantity, path)
    return math.ceil(value * 1000) if resource == "cpu" else math.ceil(value)


def check_limits(spec: Mapping[str, Any]) -> None:
    """Refuse a limit this node cannot enforce, naming the field."""
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            for name in ((c.get("resources") or {}).get("limits") or {}):
                path = f"spec.{kind}[{i}].resources.limits.{name}"
                if name == "ephemeral-storage":
                    raise FieldRefused(path, "podman cannot cap a container's writable layer here (its size option "
                                             "needs overlay on a filesystem with project quota)")
                if name.startswith("hugepages-"):
                    raise FieldRefused(path, "huge pages are not reserved for pods on this node")


def _container_requests(container: Mapping[str, Any], path: str) -> Requests:
    """A container's requests, a limit standing for a missing request (as the API server defaults them)."""
    resources = container.get("resources") or {}
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {name: _amount(name, q, f"{path}.resources.requests.{name}") for name, q in merged.items()}


def pod_requests(spec: Mapping[str, Any]) -> Requests:
    """kubelet's effective requests: the containers' sum, at least each init container's, plus the overhead."""
    total: Requests = {}
    for i, c in enumerate(spec.get("containers") or []):
        for name, amount in _container_requests(c, f"spec.containers[{i}]").items():
            total[name] = total.get(name, 0) + amount
    for i, c in enumerate(spec.get("initContainers") or []):
        for name, amount in _container_requests(c, f"spec.initContainers[{i}]").items():
            total[name] = max(total.get(name, 0), amount)
    for name, q in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, 0) + _amount(name, q, f"spec.overhead.{name}")
    return total


def _checked(resource: str, allocatable: Mapping[str, int]) -> bool:
    """cpu, memory and pods always; other standard resources when the node reports them; extended always."""
    return resource in LIMITED or resource in allocatable or "/" in resource or resource.startswith("hugepages-")


class Admission:
    def __init__(self, allocatable: Callable[[], Mapping[str, str]]) -> None:
        self._allocatable = allocatable
        self._lock = threading.Lock()
        self._admitted: dict[str, Requests] = {}
        self._rejected: dict[str, Rejection] = {}
        self._ended: set[str] = set()

    def admit(self, uid: str, requests: Requests, *, running: bool) -> Rejection | None:
        """None if the pod may run (admitting it now if new); its rejection otherwise, for good."""
        with self._lock:
            if uid in self._admitted or uid in self._ended:
                return None
            if uid in self._rejected:
                return self._rejected[uid]
            if not running:
                rejection = self._misfit(requests)
                if rejection is not None:
                    self._rejected[uid] = rejection
                    return rejection
            self._admitted[uid] = requests
            return None

    def _misfit(self, requests: Requests) -> Rejection | None:
        allocatable = {name: _amount(name, q, f"allocatable {name}") for name, q in self._allocatable().items()}
        if "pods" in allocatable and len(self._admitted) + 1 > allocatable["pods"]:
            return Rejection("OutOfpods", f"Node didn't have enough resource: pods, requested: 1, used: "
                                          f"{len(self._admitted)}, capacity: {allocatable['pods']}")
        for resource, amount in sorted(requests.items()):
            if amount <= 0 or not _checked(resource, allocatable):
                continue
            used = sum(r.get(resource, 0) for r in self._admitted.values())
            capacity = allocatable.get(resource, 0)
            if used + amount > capacity:
                return Rejection(f"OutOf{resource}", f"Node didn't have enough resource: {resource}, requested: "
                                                     f"{amount}, used: {used}, capacity: {capacity}")
        return None

    def release(self, uid: str) -> None:
        """The pod ended (Succeeded or Failed): its requests are free again, and it is not admitted again."""
        with self._lock:
            if self._admitted.pop(uid, None) is not None:
                self._ended.add(uid)

    def forget(self, uid: str) -> None:
        """The pod left the node."""
        with self._lock:
            self._admitted.pop(uid, None)
            self._rejected.pop(uid, None)
            self._ended.discard(uid)
