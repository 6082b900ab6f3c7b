"""CloudHub reading the Leases of a controller sharded by node (EdgeController's replicas), to route each node's
messages for it to the owner replica's own topic (cloud/replicas/routes.py decides; this runs it).

A watch keeps the group's Leases (cloud/replicas/leasewatch.py: it replaced a listing every 2 s, which cost each
CloudHub replica more CPU than everything else it did idle). A thread recounts the members when the watch shows one
come or go, and at the moments the reading says they can change without news (a joiner's start, a Lease's expiry,
the reading going stale), so that the route follows the replicas' own count. The routes are read by the hub's
handler thread under the hub's lock, so every change to them is made under that lock too.

The reading is known current as of the watch's last listing or event (every replica's renewal is one, every third
of its Lease's duration). When the watch breaks, or goes quiet on a dead connection, no event comes; once the last
one is older than the routes' ``stale_after_s`` they count nobody and every message goes to the shared topic, which
every replica hears (the owner keeps it). So an API server out of reach slows the routing down (each replica
decodes the message), never misroutes it for good.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cloud.replicas.leases import LeaseView
from cloud.replicas.routes import ReplicaRoutes

log = logging.getLogger(__name__)

STALE_AFTER_S = 5.0
"""Age of the watch's last event after which the reading is stale and the shared topic takes every message. Above
the gap between two events while a replica lives (it renews every third of its Lease: 3.3 s for EdgeController's
10 s Leases), so that a quiet watch does not switch the routes; below the shortest time a Lease good in a reading
stays good by it (two thirds of its duration, renewed every third: 6.7 s for 10 s Leases), so that a reading never
outlives a live replica's Lease and routes its nodes to another replica, which would drop them."""
READ_TIMEOUT_S = 30.0
"""The watch is opened again after this long without an event (a connection that died silently); the reading has
gone stale long before, so this only bounds how long the routing stays on the shared topic after such a death."""
MAX_WAIT_S = 5.0
"""Longest pause between two recounts, whatever the reading says (it can say nothing: no Lease read yet)."""
RECOUNT_SLACK_S = 0.01
"""A recount due at the moment the members change runs this much after it, so that it counts the change."""


class ShardRouteWatch:
    """Keeps ``routes`` (for Lease group ``routes.module``) current from ``view`` (a LeaseWatch on that group,
    started and stopped with this), on its own thread; ``lock`` is the one the routes are read under."""

    def __init__(self, view: LeaseView, routes: ReplicaRoutes, lock: threading.Lock, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.routes = routes
        self._lock = lock
        self._clock = clock
        self._read_at: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        view.subscribe(self._wake.set)
        self._thread = threading.Thread(target=self._run, name=f"routes-{routes.module}", daemon=True)

    def step(self) -> float:
        """Take in what the watch read since the last step, else recount from the last reading; the seconds until
        the next step is due."""
        now = self._clock()
        read_at = self.view.read_at()
        if read_at is not None and read_at != self._read_at:
            self._read_at = read_at
            leases = list(self.view.leases().values())
            with self._lock:
                changed = self.routes.observe(leases, now, read_at=read_at)
        else:
            with self._lock:
                changed = self.routes.refresh(now)
        if changed:
            self._changed()
        with self._lock:
            upcoming = self.routes.next_change(now)
        return max(0.01, min(MAX_WAIT_S, upcoming - self._clock() + RECOUNT_SLACK_S))

    def _changed(self) -> None:
        log.info("routing %s's messages over replicas %s", self.routes.module,
                 sorted(self.routes.members) or "none (the shared topic)")

    def start(self) -> None:
        self.view.start()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.view.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a bug here must not end the routing: the reading goes stale, the shared topic serves
                log.exception("routing step for %s failed", self.routes.module)
                wait = MAX_WAIT_S
            self._wake.wait(wait)
            self._wake.clear()
