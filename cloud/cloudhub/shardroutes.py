"""CloudHub reading the Leases of a controller sharded by node (EdgeController's replicas), to route each node's
messages for it to the owner replica's own topic (cloud/replicas/routes.py decides; this runs it).

A thread lists the group's Leases every ``period_s`` and, between two listings, recounts the members at the
moments the last reading says they can change (a joiner's start, a Lease's expiry, the reading going stale), so
that the route follows the replicas' own count without waiting for the next listing. The routes are read by the
hub's handler thread under the hub's lock, so every change to them is made under that lock too.

A listing that fails is logged and tried again at the next period; once the last good reading is older than the
routes' ``stale_after_s`` they count nobody and every message goes to the shared topic, which every replica hears
(the owner keeps it). So an API server out of reach slows the routing down (each replica decodes the message),
never misroutes it for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cloud.kube import Kube, KubeError
from cloud.replicas.leases import GROUP_LABEL, NAMESPACE, ReplicaLease
from cloud.replicas.routes import ReplicaRoutes

log = logging.getLogger(__name__)

PERIOD_S = 2.0
"""Seconds between two listings of the Leases. A joiner is counted from its acquireTime plus the join delay and
``TAKE_AFTER_S`` (4.9 s for a Lease of 10 s), so a listing every 2 s still reads it before it takes its nodes; a
Lease that ends is counted out at its expiry from the reading already held, without a new listing. Every
CloudHub replica lists, so 1 s cost each replica and the API server a list call a second for what changes only
when a replica comes or goes."""
STALE_AFTER_S = 5.0
"""Age of the last good reading after which it is stale and the shared topic takes every message. Above one
period plus one listing's timeout (the period: 4 s), so that a listing that merely ends late does not switch the
routes; below the shortest time a Lease good in a reading stays good by it (two thirds of its duration, renewed
every third: 6.7 s for EdgeController's 10 s Leases), so that a reading never outlives a live replica's Lease and
routes its nodes to another replica, which would drop them."""
class ShardRouteWatch:
    """Keeps ``routes`` (for Lease group ``routes.module``) current from the API server, on its own thread;
    ``lock`` is the one the routes are read under."""

    def __init__(self, kube: Kube, routes: ReplicaRoutes, lock: threading.Lock, *, period_s: float = PERIOD_S,
                 clock: Callable[[], float] = time.time) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, not {period_s}")
        self.kube = kube
        self.routes = routes
        self.period_s = period_s
        self._lock = lock
        self._clock = clock
        self._next_listing = 0.0
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"routes-{routes.module}", daemon=True)

    def step(self) -> float:
        """List when due, else recount from the last reading; the seconds until the next step is due."""
        now = self._clock()
        if now >= self._next_listing:
            self._next_listing = now + self.period_s
            self._list(now)
        else:
            with self._lock:
                changed = self.routes.refresh(now)
            if changed:
                self._changed()
        with self._lock:
            upcoming = min(self._next_listing, self.routes.next_change(now))
        return max(0.05, min(self.period_s, upcoming - self._clock()))

    def _list(self, now: float) -> None:
        try:
            items = self.kube.list_leases(NAMESPACE, f"{GROUP_LABEL}={self.routes.module}",
                                          timeout_s=self.period_s)
        except KubeError as exc:
            if not self._failing:
                log.warning("could not list the %s replicas' Leases (%s): routing on the last reading, then to "
                            "the shared topic", self.routes.module, exc)
            self._failing = True
            with self._lock:
                changed = self.routes.refresh(now)
        else:
            self._failing = False
            leases = [lease for item in items if (lease := ReplicaLease.parse(item)) is not None]
            with self._lock:
                changed = self.routes.observe(leases, now)
        if changed:
            self._changed()

    def _changed(self) -> None:
        log.info("routing %s's messages over replicas %s", self.routes.module,
                 sorted(self.routes.members) or "none (the shared topic)")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a bug here must not end the routing: the reading goes stale, the shared topic serves
                log.exception("routing step for %s failed", self.routes.module)
                wait = self.period_s
            self._stop.wait(wait)
