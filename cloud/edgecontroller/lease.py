"""Edge nodes' Leases in ``kube-node-lease``, renewed by the cloud from each node's live heartbeat.

A kubelet renews its node's Lease every 10 s (a quarter of its 40 s duration); the
controller-manager's node lifecycle controller takes a Lease not renewed for its
``node-monitor-grace-period`` (40 s) as a dead node: Ready turns Unknown, the
node.kubernetes.io/unreachable taint follows.

Here the cloud renews the Lease when a node's heartbeat arrives over a live session: EdgeD sends
one every 10 s (the kubelet's renew interval), its node status when that changed or is due
(edge/edged/nodereport.py, the kubelet's rule) and a bare ``lease`` update otherwise. The
edge says only "I am alive now": a renewal is only worth anything at the moment it is made, so the
cloud stamps it with its own clock when the node is heard (no clock skew between edge and
cloud), never writes one for a node whose link is down, and never replays stale ones when a
link returns. The heartbeat is EdgeD's, not just EdgeHub's keepalive, so that a node whose
pod runtime is dead loses its Lease as a kubelet's would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cloud.errors import CloudError
from cloud.kube import Kube, KubeError
from schemas.timefmt import micro_time

log = logging.getLogger(__name__)

NAMESPACE = "kube-node-lease"
DURATION_S = 40
"""The kubelet's node lease duration."""


class LeaseHeld(CloudError):
    """The node's Lease names another holder: something else (a real kubelet?) speaks for that name."""


def lease_body(node: str, duration_s: int, now: float, node_uid: str | None) -> dict[str, Any]:
    """A new node Lease, owned by its Node as the kubelet makes it (deleting the Node deletes the Lease)."""
    metadata: dict[str, Any] = {"name": node, "namespace": NAMESPACE}
    if node_uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration_s, "renewTime": micro_time(now)}}


class NodeLeases:
    """Renews node Leases; one renewal at a time per node (EdgeController's writer is keyed by node)."""

    def __init__(self, kube: Kube, duration_s: int = DURATION_S, *, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.duration_s = duration_s
        self.min_interval_s = duration_s / 8
        """Heartbeats closer together than this (a node reporting every 2 s) renew it once: at most twice the
        kubelet's rate (every quarter of the duration), so a node reporting every 10 s renews at each report."""
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}  # node -> the Lease as last written (for its resourceVersion)
        self._renewed: dict[str, float] = {}  # node -> when (monotonic) its Lease was last renewed

    def renew(self, node: str, node_uid: str | None = None) -> bool:
        """Renew ``node``'s Lease now, creating it on the first renewal; False when it was renewed moments ago.
        Raises LeaseHeld when another holder has it, KubeError when the API server refuses."""
        started = time.monotonic()
        with self._lock:
            last, lease = self._renewed.get(node), self._latest.get(node)
        if last is not None and started - last < self.min_interval_s:
            return False
        for attempt in range(2):
            if lease is None:
                lease = self.kube.get_lease(NAMESPACE, node)
            try:
                written = self._create(node, node_uid) if lease is None else self._update(node, lease)
                break
            except KubeError as exc:
                if exc.status != 409 or attempt:
                    raise
                lease = None  # created or written by someone else since: read it again
        with self._lock:
            self._latest[node] = _slim(written)
            self._renewed[node] = started
        return True

    def _create(self, node: str, node_uid: str | None) -> dict[str, Any]:
        written = self.kube.create_lease(NAMESPACE, lease_body(node, self.duration_s, self._clock(), node_uid))
        log.info("node %s: Lease %s/%s created", node, NAMESPACE, node)
        return written

    def _update(self, node: str, lease: dict[str, Any]) -> dict[str, Any]:
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder not in (None, "", node):
            raise LeaseHeld(f"Lease {NAMESPACE}/{node} is held by {holder!r}, not by node {node}: not renewed")
        renewed = {**lease, "spec": {**spec, "holderIdentity": node, "leaseDurationSeconds": self.duration_s,
                                     "renewTime": micro_time(self._clock())}}
        return self.kube.replace_lease(NAMESPACE, node, renewed)


def _slim(lease: dict[str, Any]) -> dict[str, Any]:
    """What the next renewal's replace needs of a written Lease: everything but managedFields, which the API
    server keeps by itself when a replace leaves them out, and which are most of a Lease's size (a thousand
    nodes' Leases are held here)."""
    metadata = {k: v for k, v in (lease.get("metadata") or {}).items() if k != "managedFields"}
    return {"apiVersion": lease.get("apiVersion", "coordination.k8s.io/v1"), "kind": lease.get("kind", "Lease"),
            "metadata": metadata, "spec": lease.get("spec") or {}}
