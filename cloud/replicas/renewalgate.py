"""When a replica renews its Lease, given its link to the cloud broker (CloudHub's Membership, EdgeController's
ShardLoop).

On the broker, at every renewal due. Off it, never: a replica that cannot hear its nodes must let its Lease run
out so that the others take them (a partition of that replica from the broker). But once, at the moment it
leaves: it was serving until then, so its Lease runs a whole duration from the last moment it could serve, not
from whichever scheduled renewal came before. That is the longest a Lease could already run after a cut (a cut
right after a renewal), so a partitioned replica's nodes are taken no later than before in the worst case; what
it buys is the time a broker member's death takes on NATS (its survivors elect new stream leaders, about 5 s,
then refuse sessions for up to 2 s more) for every replica whose connection was on it. Without it, a replica
whose last renewal came early lost its Lease 5.7 s after the member died, dropped its nodes, and took them back
from the others a Lease later: two moves and two resyncs of a third of the fleet for a link that was back in 7 s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cloud.replicas.leases import LeaseKeeper

log = logging.getLogger(__name__)


class RenewalGate:
    """Asked at every step of a membership loop; ``on_broker`` is ``Connection.on_broker`` with its settle time.
    The loop must also step when the link drops (``Connection.on_connection_change``), so that the renewal on
    leaving comes at that moment, not at the next one due."""

    def __init__(self, on_broker: Callable[[], bool], keeper: LeaseKeeper) -> None:
        self._on_broker = on_broker
        self._keeper = keeper
        self._was_on = False
        self._next_warning = 0.0

    def renew(self, due: bool) -> bool:
        """Whether to renew now: on the broker, when a renewal is ``due``; off it, only at the first look after
        it left (never before its first connection)."""
        on = self._on_broker()
        left = self._was_on and not on
        self._was_on = on
        if left:
            log.warning("replica %s: left the cloud broker: renewing Lease %s once more, then not until back",
                        self._keeper.identity, self._keeper.name)
        return (due and on) or left

    def held_back(self, now: float) -> None:
        """A renewal was due and :meth:`renew` said no: say so, once a renew interval at most, and not before the
        first connection (there is no Lease to lose yet)."""
        keeper = self._keeper
        if keeper.valid_until() and now >= self._next_warning:
            log.warning("replica %s: not on the cloud broker, so not renewing Lease %s (serving until %.1f s from "
                        "now)", keeper.identity, keeper.name, max(0.0, keeper.valid_until() - now))
            self._next_warning = now + keeper.renew_interval_s
