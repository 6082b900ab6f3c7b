"""Who is alive: one coordination.k8s.io/v1 Lease per replica, kept in the API server (etcd), not by us.

A replica creates its Lease (``<group>-<identity>`` in edgehive-system, labelled with its group) and renews it
every third of its duration; it watches its group's Leases to learn the others (cloud/replicas/leasewatch.py: a
watch, not a listing at each renewal, which was most of an idle replica's CPU). A Lease whose renewTime plus
leaseDurationSeconds has passed is a dead member: no reading tells that, the clock does
(:meth:`LeaseKeeper.next_change` is when to count again). The same rule runs the other way: a replica that has not
renewed its own Lease in time stops serving before anyone else can count it dead, because by then the others
may already have taken its nodes (a replica cut off from the API server must not keep serving through the
broker it can still reach).

Times are the API's wall-clock timestamps, compared with the local wall clock: replicas of one fleet share a
clock source (one machine, or NTP); ``margin_s`` absorbs what skew is left.

A member joining counts in the assignment only ``join_delay_s`` after its acquireTime, a whole Lease duration:
by then every replica has either read it or stopped serving. One that renews has read it within a renew interval
(a renewal counts only once the watch has shown it, so a replica's reading is as current as its last counted
renewal, as a listing made with the renewal was), and drops the nodes the joiner takes by the same rule at that
moment. One cut off from the API server, but still on the broker, cannot read it: its last counted renewal came
before the join, so its own Lease ran out (``duration_s - margin_s`` after that renewal) before the join delay
did. The joiner takes its nodes a little later still (``TAKE_AFTER_S``, counted from when its joining write came
back, so that a slow write does not eat into the margin): never while an old owner still serves them. A shorter
delay (one renew interval, as before) let a replica cut off from the API keep serving, for a few seconds, nodes
a joiner it could not see had already taken.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cloud.kube import Kube, KubeError
from schemas.timefmt import micro_time, parse_rfc3339

log = logging.getLogger(__name__)

NAMESPACE = "edgehive-system"
GROUP_LABEL = "replicas.edgehive.io/group"
TAKE_AFTER_S = 0.6
"""The others count a joiner after ``join_delay_s``; the joiner counts itself this much later, far more than the
others' membership loops are late in recounting (they wake at that moment, LeaseKeeper.next_change, and their
thread may wait its turn on a busy machine), so that a node's old owner has let it go before the joiner takes it:
a moment with no owner, never one with two."""


@dataclass(frozen=True)
class ReplicaLease:
    """One member's Lease, as read from the API."""

    identity: str
    renewed: float
    duration_s: float
    acquired: float

    @property
    def expires(self) -> float:
        return self.renewed + self.duration_s

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ReplicaLease | None:
        """None for a Lease that names no holder or has no times (being created, or written by hand)."""
        spec = body.get("spec") or {}
        identity = spec.get("holderIdentity")
        renewed = parse_rfc3339(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds")
        if not isinstance(identity, str) or not identity or renewed is None or not isinstance(duration, int):
            return None
        acquired = parse_rfc3339(spec.get("acquireTime"))
        return cls(identity, renewed, float(duration), renewed if acquired is None else acquired)


class LeaseView(Protocol):
    """What the readers of a group's Leases need: the Leases, whether a write has been seen, and change news.
    LeaseWatch on the API server; tests give one over a dict."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def subscribe(self, callback: Callable[[], None]) -> None: ...
    def leases(self) -> Mapping[str, ReplicaLease]: ...
    def body(self, name: str) -> dict[str, Any] | None: ...
    def seen(self, name: str, resource_version: str, timeout_s: float) -> bool: ...
    def read_at(self) -> float | None: ...


def live(leases: Iterable[ReplicaLease], now: float, join_delay_s: float = 0.0) -> set[str]:
    """The members that count in the assignment at ``now``: not expired, and joined at least ``join_delay_s``
    ago."""
    return {lease.identity for lease in leases if lease.expires > now and lease.acquired + join_delay_s <= now}


def default_margin(duration_s: float) -> float:
    """How long before its Lease expires a member stops serving by its own clock (LeaseKeeper.margin_s)."""
    return min(1.0, duration_s / 10)


def join_delay(duration_s: float) -> float:
    """How long after its acquireTime the others count a member: the Lease duration, by when every member has
    read it or stopped serving (LeaseKeeper.join_delay_s; the module's docstring says why)."""
    return duration_s


def serving(leases: Iterable[ReplicaLease], now: float) -> set[str]:
    """The members that serve at ``now`` by their own count, as seen from their Leases by an observer that holds
    none (CloudHub routing to EdgeController's replicas, cloud/replicas/routes.py): not expired, and joined at
    least ``join_delay`` plus ``TAKE_AFTER_S`` ago, each by its own leaseDurationSeconds, which is when the
    joiner takes its nodes (its own rule in LeaseKeeper.members; the joiner adds its joining write's time, which
    no Lease shows, so an observer counts it that much early, and a message routed to it meanwhile is resent)."""
    return {lease.identity for lease in leases
            if lease.expires > now and lease.acquired + join_delay(lease.duration_s) + TAKE_AFTER_S <= now}


def lease_name(group: str, identity: str) -> str:
    return f"{group}-{identity}"


def next_lease(current: dict[str, Any] | None, *, group: str, identity: str, duration_s: int,
               now: float) -> dict[str, Any]:
    """The body that renews ``identity``'s Lease at ``now``: a new one when there is none, the current one
    renewed (with its resourceVersion, so that a concurrent writer gets a conflict instead of a silent
    overwrite), and a new acquireTime when the current one had expired (this is a new membership: the join
    delay applies again, because the others have given its nodes away)."""
    if current is None:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": lease_name(group, identity), "namespace": NAMESPACE,
                             "labels": {GROUP_LABEL: group}},
                "spec": {"holderIdentity": identity, "leaseDurationSeconds": duration_s,
                         "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}}
    spec: dict[str, Any] = dict(current.get("spec") or {})
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": dict(current["metadata"]),
            "spec": spec}
    found = ReplicaLease.parse(current)
    if found is None or found.identity != identity or found.expires <= now:
        spec["acquireTime"] = micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    spec.update(holderIdentity=identity, leaseDurationSeconds=duration_s, renewTime=micro_time(now))
    return body


class LeaseKeeper:
    """Renews this replica's Lease and reads the others' from ``view`` (a LeaseWatch on the group, started and
    stopped with the keeper). Not thread-safe: one thread calls :meth:`tick`.

    :meth:`tick` returns the members to assign nodes over; this replica is among them only while its own Lease
    is good (renewed within ``duration_s - margin_s``), so a replica cut off from the API server owns nothing
    before the others take its nodes. A renewal is one write: the Lease it replaces is the one the watch (or the
    last write) gave, and only a conflict, or a Lease gone meanwhile, costs a read; a watch that has not shown
    the write within half the time left costs a listing (without one, a replica whose watch lagged for good
    would keep its Lease renewed, so its nodes with it, while serving none of them).
    """

    def __init__(self, kube: Kube, *, group: str, identity: str, duration_s: int, view: LeaseView,
                 margin_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        if duration_s < 2:
            raise ValueError(f"a Lease of {duration_s} s leaves no time to renew it: use 2 s or more")
        self.kube = kube
        self.view = view
        self.group = group
        self.identity = identity
        self.name = lease_name(group, identity)
        self.duration_s = duration_s
        self.renew_interval_s = duration_s / 3
        self.margin_s = default_margin(duration_s) if margin_s is None else margin_s
        self.join_delay_s = join_delay(duration_s)
        self.take_after_s = TAKE_AFTER_S
        self._clock = clock
        self._renewed_at = 0.0  # local time at which the last counted renewal was sent
        self._acquired = 0.0  # when this membership began, for its own take: acquireTime plus its write's time
        self._joined: tuple[float, float] = (0.0, 0.0)  # the acquireTime a write began, and how long it took
        self._written: dict[str, Any] | None = None  # the Lease as the last write returned it
        self._frozen: set[str] = set()  # the others as last seen live, kept while the API cannot be read
        self._read: Mapping[str, ReplicaLease] = {}  # the Leases as the watch held them at the last counted renewal
        self._listed: Mapping[str, ReplicaLease] = {}  # a listing made because the watch lagged, until it catches up

    def start(self) -> None:
        self.view.start()

    def stop(self) -> None:
        self.view.stop()

    def valid_until(self) -> float:
        """When this replica must stop serving if it has not renewed by then."""
        return self._renewed_at + self.duration_s - self.margin_s if self._renewed_at else 0.0

    def tick(self) -> set[str]:
        """Renew, and return the live members (this one included only while its Lease is good). The renewal
        counts once the watch has shown it: the others are then read as of the renewal at least."""
        start = self._clock()
        timeout = self.renew_interval_s / 2  # the write and the wait for the watch, both within one interval
        remaining = self.valid_until() - start
        if 0 < remaining < 2 * timeout:
            # Back on the broker just before the Lease runs out: the calls must end before this replica would
            # stop serving. While they block, nothing ends the serving, and the others, reading the Lease as run
            # out, take the nodes; a node then had two replicas for a moment (found by the HA fleet test, with a
            # slow API server). A renewal that cannot make it in time fails, the Lease runs out, and the next
            # one is a new membership, with the join delay.
            timeout = remaining / 2
        deadline = start + 2 * timeout
        try:
            written = self._renew(start, timeout, deadline)
        except KubeError as exc:
            if exc.status == 404 and "namespace" in exc.reason.lower():
                self._ensure_namespace()
            log.warning("could not renew Lease %s: %s (serving until %.1f s from now)", self.name, exc,
                        max(0.0, self.valid_until() - self._clock()))
            return self.members()
        self._written = written
        own = ReplicaLease.parse(written)
        if own is not None and abs(own.acquired - start) < 1e-3:  # this write began a membership
            self._joined = (own.acquired, self._clock() - start)
        version = str((written.get("metadata") or {}).get("resourceVersion") or "")
        if self.view.seen(self.name, version, max(0.0, (deadline - self._clock()) / 2)):
            self._listed = {}
        else:  # the watch lags: a listing proves the reading current instead, as before the watch
            try:
                items = self.kube.list_leases(NAMESPACE, f"{GROUP_LABEL}={self.group}",
                                              timeout_s=max(0.01, deadline - self._clock()))
            except KubeError as exc:
                log.warning("renewed Lease %s, but neither the watch nor a listing read the others up to now "
                            "(%s), so the renewal does not count (serving until %.1f s from now)", self.name, exc,
                            max(0.0, self.valid_until() - self._clock()))
                return self.members()
            log.info("the watch of the %s Leases lags: listed them to count renewal %s", self.group, version)
            self._listed = {item["metadata"]["name"]: lease for item in items
                            if (lease := ReplicaLease.parse(item)) is not None}
        self._renewed_at = start
        # The others count from the acquireTime, stamped before the write; an old owner cut off from the API
        # reads nothing after its last renewal, whose write the joiner's came after, so the joiner counts
        # itself from when its own write came back.
        acquired = own.acquired if own is not None else start
        self._acquired = acquired + (self._joined[1] if self._joined[0] == acquired else 0.0)
        self._read = self._leases()
        self._frozen = set()
        return self.members()

    def _renew(self, now: float, timeout: float, deadline: float) -> dict[str, Any]:
        """Write the renewal over the Lease last known (the last write's answer, unless the watch has a newer
        one); on a conflict or a Lease gone, read it once and write again, within ``deadline``."""
        current = self.view.body(self.name)
        if self._written is not None and not self.view.seen(self.name, _version(self._written), 0.0):
            current = self._written  # the watch is behind this replica's own last write
        body = next_lease(current, group=self.group, identity=self.identity, duration_s=self.duration_s, now=now)
        try:
            return self.kube.write_lease(NAMESPACE, body, timeout_s=timeout)
        except KubeError as exc:
            if exc.status not in (404, 409) or "namespace" in exc.reason.lower():
                raise
        current = self.kube.get_lease(NAMESPACE, self.name, timeout_s=max(0.01, (deadline - self._clock()) / 3))
        body = next_lease(current, group=self.group, identity=self.identity, duration_s=self.duration_s, now=now)
        return self.kube.write_lease(NAMESPACE, body, timeout_s=max(0.01, (deadline - self._clock()) / 2))

    def observe(self) -> set[str]:
        """The members without renewing (a replica off the cloud broker must not renew, but must still see a
        member that joins meanwhile: the joiner takes its nodes once the others can have read it, and this
        replica, still serving until its own Lease runs out, has to let them go by the same rule). The watch
        keeps reading the Leases: what it shows only adds members to the frozen others, so it never gives this
        replica a node."""
        return self.members()

    def next_change(self, now: float | None = None) -> float:
        """The next moment :meth:`members` can change with no news from the watch: a Lease running out (another's,
        or this replica's own serving ending), a joiner's join delay passing, this replica taking its nodes, or
        its readings going stale (the others frozen). ``math.inf`` when there is none."""
        now = self._clock() if now is None else now
        moments = [self.valid_until(), self.takes_at()]
        if self._renewed_at:
            moments.append(self._renewed_at + self.renew_interval_s * 1.5)
        for name, lease in self._leases().items():
            if name != self.name:
                moments += [lease.expires, lease.acquired + self.join_delay_s]
        return min((moment for moment in moments if moment > now), default=math.inf)

    def members(self, now: float | None = None) -> set[str]:
        """The live members at ``now`` from what was last read. While the API cannot be read the others are
        not expired from stale readings (they may be renewing fine): this replica's own Lease running out
        ends its serving instead. Nor is a member that was still joining at the last reading left out: by
        now the others count it, and it may have taken some of this replica's nodes. So the others are
        frozen as every Lease that was good at the last reading, which can only take nodes from this replica
        (rendezvous hashing: more members, fewer nodes each), never give it one: a replica that cannot
        read the API never takes a node."""
        now = self._clock() if now is None else now
        leases = [lease for name, lease in self._leases().items() if name != self.name]
        if self._clock() - self._renewed_at > self.renew_interval_s * 1.5 and self._renewed_at:
            if not self._frozen:  # from the reading of the last renewal, as it was, whatever came since
                self._frozen = live([lease for name, lease in self._read.items() if name != self.name],
                                    self._renewed_at)
            others = self._frozen | live(leases, now, self.join_delay_s)  # joiners seen since
        else:
            others = live(leases, now, self.join_delay_s)
        found = set(others)
        found.discard(self.identity)
        if now < self.valid_until() and self._acquired + self.join_delay_s + self.take_after_s <= now:
            found.add(self.identity)
        return found

    def _leases(self) -> Mapping[str, ReplicaLease]:
        """The Leases as the watch holds them, with what a listing made while it lagged read beyond it: of two
        readings of one Lease the later renewal; a Lease in either counts (a member too many only takes nodes
        from this replica; one the watch has seen deleted since stays until it runs out)."""
        watched = self.view.leases()
        if not self._listed:
            return watched
        merged = dict(watched)
        for name, lease in self._listed.items():
            held = merged.get(name)
            if held is None or (lease.renewed, lease.acquired) > (held.renewed, held.acquired):
                merged[name] = lease
        return merged

    def takes_at(self) -> float:
        """When this replica counts itself a member: its current membership's acquireTime, plus the time its joining
        write took, the join delay and ``TAKE_AFTER_S`` (``serving`` computes the same from its Lease for an
        observer, less the write's time); 0.0 before its first renewal."""
        return self._acquired + self.join_delay_s + self.take_after_s if self._renewed_at else 0.0

    def serving(self, now: float | None = None) -> bool:
        return (self._clock() if now is None else now) < self.valid_until()

    def release(self) -> None:
        """Leaving on purpose: delete the Lease, so that the others take the nodes at once instead of after
        the duration (the caller has stopped serving first); the watch stops."""
        self._renewed_at = 0.0
        self.view.stop()
        try:
            self.kube.delete_lease(NAMESPACE, self.name, timeout_s=self.renew_interval_s)
        except KubeError as exc:
            log.warning("could not delete Lease %s: %s (the others take its nodes when it expires)", self.name, exc)

    def _ensure_namespace(self) -> None:
        try:
            self.kube.ensure_namespace(NAMESPACE)
        except KubeError as exc:
            log.warning("could not create namespace %s: %s", NAMESPACE, exc)


def _version(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")
