"""When a silent edge node's NodeReady turns Unknown, and who writes it.

kube-controller-manager's node lifecycle controller marks a node's conditions Unknown once
neither its Lease nor its status was renewed for ``--node-monitor-grace-period`` (40 s by
default: four missed 10 s renewals, so one lost keepalive or a short hiccup of the link does
not flap the node), then taints it ``node.kubernetes.io/unreachable``. EdgeController keeps
the same period, counted from the last heartbeat it heard from the node, not from the moment
CloudHub noticed the link was gone.

On a cluster that runs a controller-manager, that controller is the one that marks Unknown
(it also taints and, for pods without forever tolerations, evicts): EdgeController then only
stops renewing the Lease and leaves the node to it, so that the two never write the node's
conditions against each other. Without one (a bare API server), EdgeController marks the
conditions Unknown itself after the same period. A controller-manager is taken to be present
while its leader-election Lease (``kube-system/kube-controller-manager``) is held and fresh.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from cloud.kube import Kube, KubeError
from schemas.timefmt import parse_rfc3339

CONTROLLER_MANAGER_LEASE = ("kube-system", "kube-controller-manager")
GRACE_S = 40.0
"""kube-controller-manager's default --node-monitor-grace-period."""


def lease_fresh(lease: dict[str, Any] | None, now: float) -> bool:
    """The Lease is held and was renewed within its duration."""
    spec = (lease or {}).get("spec") or {}
    renewed = parse_rfc3339(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not spec.get("holderIdentity") or renewed is None or not isinstance(duration, int):
        return False
    return now - renewed <= duration


class ControllerManagerWatch:
    """Whether a kube-controller-manager leads on this cluster now (its node lifecycle controller then marks
    silent nodes Unknown), read at most every ``cache_s``: a thousand nodes cut at once ask together. When the
    API server cannot tell, False: EdgeController then writes Unknown itself, which repeats what the controller
    would write rather than leave a dead node Ready."""

    def __init__(self, kube: Kube, cache_s: float = 10.0) -> None:
        self.kube = kube
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._known: tuple[float, bool] | None = None  # (when read, monotonic; active)

    def active(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._known is not None and now - self._known[0] < self.cache_s:
                return self._known[1]
        try:
            found = lease_fresh(self.kube.get_lease(*CONTROLLER_MANAGER_LEASE), time.time())
        except KubeError:
            found = False
        with self._lock:
            self._known = (now, found)
        return found


def unknown_delay(last_heard: float | None, grace_s: float, now: float) -> float:
    """Seconds from ``now`` (monotonic) until a node last heard at ``last_heard`` has been silent for ``grace_s``;
    the whole period when it was never heard by this process (it may have been heard a moment ago)."""
    if last_heard is None:
        return grace_s
    return max(0.0, last_heard + grace_s - now)


def unknown_conditions(current: list[dict[str, Any]], now_text: str, grace_s: float) -> list[dict[str, Any]]:
    """Every condition the node has, and Ready at least, turned Unknown, as the node lifecycle controller does:
    nothing the node said about itself is known any more."""
    message = f"edgehive: nothing heard from the node for {grace_s:.0f} s (node monitor grace period); its link " \
              "to the cloud is down"
    types = [c.get("type") for c in current if c.get("type")] or ["Ready"]
    if "Ready" not in types:
        types.append("Ready")
    previous = {c.get("type"): c for c in current}
    out = []
    for kind in types:
        before = previous.get(kind) or {}
        changed = before.get("status") != "Unknown"
        out.append({"type": kind, "status": "Unknown", "reason": "EdgeLinkLost", "message": message,
                    "lastHeartbeatTime": before.get("lastHeartbeatTime") or now_text,
                    "lastTransitionTime": now_text if changed else before.get("lastTransitionTime") or now_text})
    return out
