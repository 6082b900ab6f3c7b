"""Keeping a controller replica's NodeShard current: its Lease renewed, the members read, each handover applied.

The loop CloudHub's Membership runs (cloud/cloudhub/replica.py), for a controller sharded by node
(EdgeController's replicas, cloud/edgecontroller/shard.py), with the same rules:

- renew every third of the Lease's duration, and between renewals recount the members from what the watch holds
  at the moments they can change (LeaseKeeper.next_change), when the watch shows a member come or go, and every
  half second at most (the known nodes are read then: nothing announces their changes here), so that a Lease
  running out (this replica's or another's) ends or moves the serving on time;
- not on the broker, do not renew (this replica cannot hear its nodes, so its Lease must run out and the others
  take them) but once, at the moment it leaves (cloud/replicas/renewalgate.py), and still read the watch, so
  that a member joining meanwhile takes its nodes from this one too;
- leaving on purpose: serve nothing first, then delete the Lease, so that the others take the nodes at once.

One step is :meth:`ShardLoop.step`, with the clock injected, so a test drives it without a thread or a sleep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from cloud.replicas.assignment import Handover
from cloud.replicas.leases import LeaseKeeper
from cloud.replicas.renewalgate import RenewalGate
from cloud.replicas.shard import NodeShard

log = logging.getLogger(__name__)

MAX_WAIT_S = 0.5
"""Longest pause between two steps: how late a handover can follow a change of the known nodes."""
JOIN_SLACK_S = 0.01
"""A step due at this replica's own join moment runs this much after it, so that its count includes itself."""


class ShardLoop:
    """Runs ``keeper`` and ``shard`` together; ``nodes`` gives the nodes known now (edge Nodes and nodes with a
    session); ``apply`` takes each handover (on the loop's thread, never two at once)."""

    def __init__(self, keeper: LeaseKeeper, shard: NodeShard, nodes: Callable[[], Iterable[str]],
                 apply: Callable[[Handover], None], *, on_broker: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        if not shard.sharded:
            raise ValueError("a shard loop needs a replica's shard (an identity), not the only replica's")
        self.keeper = keeper
        self.shard = shard
        self._nodes = nodes
        self._apply = apply
        self._gate = RenewalGate(on_broker, keeper)
        self._clock = clock
        self._next_renewal = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        keeper.view.subscribe(self._wake.set)
        self._thread = threading.Thread(target=self._run, name="shard-membership", daemon=True)

    def step(self) -> float:
        """Renew or recount, then hand over what moved; the seconds until the next step is due."""
        now = self._clock()
        due = now >= self._next_renewal
        if self._gate.renew(due):
            members = self.keeper.tick()
            self._next_renewal = now + self.keeper.renew_interval_s
        elif due:  # off the broker: look again soon, to renew once it is back
            self._next_renewal = now + min(MAX_WAIT_S, self.keeper.renew_interval_s)
            self._gate.held_back(now)
            members = self.keeper.observe()  # a member joining meanwhile takes its nodes from us too
        else:  # between renewals: a Lease that ran out ends the serving on time
            members = self.keeper.members()
        handover = self.shard.update(nodes=set(self._nodes()), members=members)
        if handover:
            log.info("replica %s: %d nodes now (gained %d, lost %d) over members %s", self.keeper.identity,
                     len(self.shard.owned or ()), len(handover.gained), len(handover.lost),
                     sorted(self.shard.assignment.members if self.shard.assignment else ()))
            self._handed(handover)
        now = self._clock()
        wait = min(MAX_WAIT_S, max(0.05, self._next_renewal - now))
        joins = self.keeper.takes_at() - now
        if joins > 0:  # take the nodes when CloudHub starts routing them here (it counts from the Lease), not later
            wait = min(wait, joins + JOIN_SLACK_S)
        return max(0.01, min(wait, self.keeper.next_change(now) - now + JOIN_SLACK_S))

    def start(self) -> None:
        self.keeper.start()
        self._thread.start()

    def wake(self) -> None:
        """Step now (the link to the broker changed), not at the next step due."""
        self._wake.set()

    def close(self) -> None:
        """Leave on purpose: serve nothing, then delete the Lease so that the others take the nodes now."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.leave()

    def leave(self) -> None:
        handover = self.shard.update(members=())
        if handover:
            self._handed(handover)
        self.keeper.release()

    def _handed(self, handover: Handover) -> None:
        """Each node's move logged (the record of who acted for which node when: the HA tests read it, as an
        operator would), right after the shard changed, so that a spell read from the log is never shorter at
        its end, and starts at most a moment late: far less than ``TAKE_AFTER_S``, the gap between two owners."""
        for node in sorted(handover.lost):
            log.info("node %s no longer owned here", node)
        for node in sorted(handover.gained):
            log.info("node %s owned here", node)
        self._apply(handover)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a bug here must not end the loop: the Lease would run out with the nodes still ours
                log.exception("replica %s: membership step failed", self.keeper.identity)
                self._fail_safe()
                wait = MAX_WAIT_S
            self._wake.wait(wait)
            self._wake.clear()

    def _fail_safe(self) -> None:
        """After a failed step: keep to what the last reading allows (the Lease running out ends the serving),
        or serve nothing if even that fails; never two owners for a node."""
        try:
            handover = self.shard.update(nodes=self.shard.assignment.nodes if self.shard.assignment else (),
                                         members=self.keeper.members())
        except Exception:
            handover = self.shard.update(members=())
        if handover:
            try:
                self._handed(handover)
            except Exception:
                log.exception("replica %s: a handover failed to apply", self.keeper.identity)
