"""Active/standby by leader election on one coordination.k8s.io/v1 Lease, for EdgeController and DeviceController.

Why not sharded like CloudHub: each controller replica keeps a full informer cache of the Nodes, Pods,
ConfigMaps, Secrets (and Devices) it sends to nodes, and a shard would still need most of it (Secrets and
ConfigMaps are shared across nodes, and every replica must see every Pod to know whose node it is on). The
figure that decided it: `edgehive bench scale` runs one EdgeController for 1,000 simulated nodes with 2 pods
each; we assumed about 20 KB of cache per node (a Node of ~4 KB, two Pods of ~6 KB and their share of
ConfigMaps and Secrets, kept as packed objects), which is ~2 GB at 100,000 nodes: one machine holds it, so
the cache does not force sharding, and N copies of it would cost N times that for no gain in capacity. What
one controller cannot keep up with is CPU for status writes, which the API server bounds first. So one leader
works and the others wait, holding nothing, until its Lease expires.

The rules, in the order that makes them safe: a candidate takes the Lease only when it has none, holds it, or
the holder's renewTime plus leaseDurationSeconds has passed (:func:`may_take`); the write carries the
resourceVersion it read, so two candidates cannot both win. The leader renews every third of the duration and
stops the process when it has not renewed for ``duration - margin`` (its own clock, from when it sent the last
good renewal), which is before any standby can count the Lease expired (from the renewTime written, which is
later). Exiting, as client-go's leader election does, is the one stop that leaves no thread of the old leader
working: the supervisor starts it again, as a standby.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from cloud.kube import Kube, KubeError
from cloud.replicas.leases import NAMESPACE, ReplicaLease
from schemas.timefmt import micro_time

log = logging.getLogger(__name__)

LOST_EXIT = 3


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def may_take(current: dict[str, Any] | None, identity: str, now: float) -> bool:
    """Whether ``identity`` may write the Lease ``current`` at ``now``: none yet, its own, or expired."""
    if current is None:
        return True
    lease = ReplicaLease.parse(current)
    return lease is None or lease.identity == identity or lease.expires <= now


def leader_lease(current: dict[str, Any] | None, *, name: str, identity: str, duration_s: int,
                 now: float) -> dict[str, Any]:
    """The body that makes ``identity`` the holder at ``now``: a new Lease, a renewal of its own (same
    acquireTime), or a takeover (new acquireTime, one more transition); with the resourceVersion read."""
    spec: dict[str, Any] = dict((current or {}).get("spec") or {})
    metadata: dict[str, Any] = dict((current or {}).get("metadata") or {"name": name, "namespace": NAMESPACE})
    held = ReplicaLease.parse(current) if current is not None else None
    if held is None or held.identity != identity:
        spec["acquireTime"] = micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (0 if current is None else 1)
    spec.update(holderIdentity=identity, leaseDurationSeconds=duration_s, renewTime=micro_time(now))
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


class LeaderElector:
    """One candidate for the Lease ``name`` in edgehive-system."""

    def __init__(self, kube: Kube, name: str, identity: str, duration_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        if duration_s < 2:
            raise ValueError(f"a Lease of {duration_s} s leaves no time to renew it: use 2 s or more")
        self.kube = kube
        self.name = name
        self.identity = identity
        self.duration_s = duration_s
        self.renew_interval_s = duration_s / 3
        self.margin_s = min(1.0, duration_s / 10)
        self._clock = clock
        self._renewed_at = 0.0
        self._stop = threading.Event()

    def valid_until(self) -> float:
        """When the leader must have stopped if it has not renewed by then (0: not leading)."""
        return self._renewed_at + self.duration_s - self.margin_s if self._renewed_at else 0.0

    def leading(self, now: float | None = None) -> bool:
        return (self._clock() if now is None else now) < self.valid_until()

    def try_lead(self) -> bool:
        """One attempt to take or renew the Lease; True when this candidate holds it now."""
        start = self._clock()
        timeout = self.renew_interval_s / 2
        try:
            current = self.kube.get_lease(NAMESPACE, self.name, timeout_s=timeout)
            if not may_take(current, self.identity, start):
                return False
            self.kube.write_lease(NAMESPACE, leader_lease(current, name=self.name, identity=self.identity,
                                                          duration_s=self.duration_s, now=start),
                                  timeout_s=timeout)
        except KubeError as exc:
            if exc.status == 404 and "namespace" in exc.reason.lower():
                try:
                    self.kube.ensure_namespace(NAMESPACE)
                except KubeError as again:
                    log.warning("could not create namespace %s: %s", NAMESPACE, again)
            elif exc.status != 409:  # 409: another candidate wrote it first
                log.warning("could not write Lease %s: %s", self.name, exc)
            return False
        self._renewed_at = start
        return True

    def wait_to_lead(self) -> None:
        """Block until this candidate holds the Lease (a standby does nothing else meanwhile)."""
        log.info("%s: standby for Lease %s/%s", self.identity, NAMESPACE, self.name)
        while not self.try_lead():
            self._stop.wait(self.renew_interval_s)
        log.info("%s: leading (Lease %s/%s, %d s)", self.identity, NAMESPACE, self.name, self.duration_s)

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew on a thread; call ``on_lost`` the moment the Lease can no longer be counted ours."""
        def run() -> None:
            next_renewal = self._clock() + self.renew_interval_s
            while not self._stop.is_set():
                now = self._clock()
                if now >= next_renewal:
                    if self.try_lead():
                        next_renewal = self._clock() + self.renew_interval_s
                    else:
                        next_renewal = now + min(0.5, self.renew_interval_s / 3)  # retry soon, still leading
                if not self.leading():
                    log.error("%s: could not renew Lease %s in time: stopping before another takes over",
                              self.identity, self.name)
                    on_lost()
                    return
                self._stop.wait(max(0.01, min(next_renewal, self.valid_until()) - self._clock()))

        thread = threading.Thread(target=run, name="leader-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Stopping on purpose: let a standby take over now rather than when the Lease expires."""
        self._stop.set()
        if not self._renewed_at:
            return
        self._renewed_at = 0.0
        try:
            current = self.kube.get_lease(NAMESPACE, self.name, timeout_s=self.renew_interval_s)
            if current is not None and (current.get("spec") or {}).get("holderIdentity") == self.identity:
                self.kube.delete_lease(NAMESPACE, self.name, timeout_s=self.renew_interval_s)
        except KubeError as exc:
            log.warning("could not release Lease %s: %s (a standby takes over when it expires)", self.name, exc)


def lose_leadership() -> None:
    """The leader's stop when its Lease runs out: exit at once, no draining (a standby may be taking over)."""
    logging.shutdown()
    os._exit(LOST_EXIT)
