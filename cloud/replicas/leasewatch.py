"""The Leases of one replica group as the API server's watch reports them: what LeaseKeeper and CloudHub's routes
read instead of listing the Leases again and again.

Why a watch: listing the group's Leases at every renewal (and, in CloudHub, the EdgeController replicas' every 2 s)
was most of an idle replica's CPU (each call through the Kubernetes client costs a few milliseconds), for Leases
that change only when a replica comes or goes. A watch delivers each change once, as it happens; what the listings
also told, that a Lease has run out, needs no reading at all: it is renewTime plus leaseDurationSeconds, so the
readers recount at those moments from what they hold (LeaseKeeper.next_change, ReplicaRoutes.next_change).

What a listing proved and a watch does not by itself: that the reading is current. A watch can lag, or hang on a
connection that died without a word, and a replica that misses a joiner keeps nodes the joiner takes. So the
keeper counts a renewal only once the watch has delivered that very write (:meth:`LeaseWatch.seen`): events come
in the order they were written, so everything written before the renewal (a joiner's new Lease among it) is in the
cache by then, as it would have been in a listing made at the renewal. A renewal the watch does not show in time
is not counted, and the replica stops serving when its Lease would run out, as when the renewal itself fails.

:attr:`LeaseWatch.read_at` is the moment of the last listing or event: the reading is known current as of then
(CloudHub's routes go stale from it, cloud/cloudhub/shardroutes.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from cloud.informer import Informer
from cloud.kube import Kube
from cloud.packed import Packed
from cloud.replicas.leases import GROUP_LABEL, NAMESPACE, ReplicaLease
from schemas.kubeobj import meta

log = logging.getLogger(__name__)

LEASE_KIND = "lease"
"""cloud/kube.py's name for coordination.k8s.io/v1 Leases."""
SEEN_KEPT = 8
"""Versions of each Lease remembered for :meth:`LeaseWatch.seen`: a write can be overtaken by later ones (written
by hand, or a retried renewal) before its writer asks whether the watch has shown it."""


class LeaseWatch:
    """The Leases labelled with ``group`` in edgehive-system, kept current by an informer on its own thread.

    ``subscribe``'s callbacks run on that thread when the members can have changed (a Lease added, deleted, or
    given a new holder, duration or acquireTime): a renewal alone only moves an expiry later, which the readers'
    timers pick up at their next step, so it wakes nobody. ``read_timeout_s`` watches again after that long
    without an event: a connection that died silently is noticed within it."""

    def __init__(self, kube: Kube, group: str, *, read_timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.group = group
        self._clock = clock
        self._cond = threading.Condition()
        self._bodies: dict[str, dict[str, Any]] = {}
        self._leases: dict[str, ReplicaLease] = {}
        self._versions: dict[str, deque[str]] = {}
        self._read_at: float | None = None
        self._callbacks: list[Callable[[], None]] = []
        self.informer = Informer(kube, LEASE_KIND, self._on_event, namespace=NAMESPACE,
                                 label_selector=f"{GROUP_LABEL}={group}", read_timeout_s=read_timeout_s,
                                 on_current=self._on_current)

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def leases(self) -> Mapping[str, ReplicaLease]:
        """Each Lease that names a holder and its times, by Lease name (replaced whole on each change: the
        caller may keep it)."""
        return self._leases

    def body(self, name: str) -> dict[str, Any] | None:
        """The Lease ``name`` as last delivered (the caller must not change it)."""
        with self._cond:
            return self._bodies.get(name)

    def seen(self, name: str, resource_version: str, timeout_s: float) -> bool:
        """Whether the watch has delivered Lease ``name`` at ``resource_version``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while resource_version not in self._versions.get(name, ()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def read_at(self) -> float | None:
        """When the cache was last known current (the last listing or event); None before the first listing."""
        return self._read_at

    def _on_current(self) -> None:
        self._read_at = self._clock()

    def _on_event(self, _kind: str, event: str, obj: dict[str, Any], _packed: Packed) -> None:
        found = meta(obj)
        name = found.name
        if not name:
            return
        with self._cond:
            before = self._leases.get(name)
            leases = dict(self._leases)
            if event == "DELETED":
                self._bodies.pop(name, None)
                self._versions.pop(name, None)
                leases.pop(name, None)
                after = None
            else:
                self._bodies[name] = obj
                self._versions.setdefault(name, deque(maxlen=SEEN_KEPT)).append(found.resource_version or "")
                after = ReplicaLease.parse(obj)
                if after is None:
                    leases.pop(name, None)
                else:
                    leases[name] = after
            self._leases = leases
            self._read_at = self._clock()  # before the callbacks: what they wake reads this event as current
            self._cond.notify_all()
        if not _same_member(before, after):
            for callback in self._callbacks:
                callback()


def _same_member(before: ReplicaLease | None, after: ReplicaLease | None) -> bool:
    """Whether the change can leave the counted members as they were at every moment to come but its expiry
    (a renewal of a Lease still good)."""
    if before is None or after is None:
        return before is after
    return (before.identity, before.duration_s, before.acquired) == (after.identity, after.duration_s,
                                                                      after.acquired)
