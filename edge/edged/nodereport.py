"""When EdgeD sends its Node status: on a change, or once the report period has passed, as the kubelet does.

A kubelet computes its node's status every ``nodeStatusUpdateFrequency`` (10 s) but patches it only when
something in it changed or ``nodeStatusReportFrequency`` (5 min) has passed since the last patch
(pkg/kubelet/kubelet_node_status.go: tryUpdateNodeStatus, nodeStatusHasChanged); the node's liveness goes
through its Lease in the meantime. Sending every 10 s regardless made node statuses most of the Kubernetes API's
writes at fleet scale (issue 17's capacity model: ~20k writes/s at 100,000 nodes). EdgeD follows the same rule:
this module decides, from the status just computed, the last one sent and the clock, whether to send; the
Lease heartbeat between sends is component.py's.

What counts as a change is the kubelet's: any field of the status, with conditions compared in type order and
without their ``lastHeartbeatTime`` (which moves at every computation). A condition's ``lastTransitionTime``
is carried over from the previous computation while its status stays the same, so it moves only with a real
transition and is compared like any other field.

A kubelet compares with the Node it reads back, EdgeD with the last status it sent: it does not see the Node.
So when the cloud marks the node Unknown behind its back, EdgeD learns of it only through its cloud link going
down and up (component.py then sends the status again), which is how that happens with edgehive's own
EdgeController. A controller-manager marking the node Unknown because EdgeController itself was away for over
the grace period, while the node's link stayed up, is put right in the cloud: the Lease heartbeat carries the
conditions, and EdgeController patches a Node whose conditions differ from them (cloud/edgecontroller/
controller.py, ``_repair_conditions``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

UPDATE_S = 10.0
"""The kubelet's default nodeStatusUpdateFrequency: how often the status is computed (and the Lease renewed)."""
REPORT_S = 300.0
"""The kubelet's default nodeStatusReportFrequency (with node Leases): the longest a status goes unsent."""


def check_frequencies(update_s: float, report_s: float) -> None:
    """Refuses periods that cannot work, naming the flag: ValueError."""
    if not (math.isfinite(update_s) and update_s > 0):
        raise ValueError(f"node_status_s (--node-status-s) must be a positive number of seconds, not {update_s}")
    if not math.isfinite(report_s) or report_s < update_s:
        raise ValueError(f"node_status_report_s (--node-status-report-s) must be a number of seconds no smaller "
                         f"than node_status_s ({update_s}): the status is only looked at every node_status_s; "
                         f"not {report_s}")


def without_heartbeats(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions without ``lastHeartbeatTime``, which moves at every computation, in their order."""
    return [{k: v for k, v in c.items() if k != "lastHeartbeatTime"} for c in conditions]


def heartbeat_body(status: dict[str, Any]) -> dict[str, Any]:
    """The body of the Lease heartbeat sent between statuses: the status's conditions, without heartbeat times
    (the cloud stamps its own), so that the cloud can put back a Node whose conditions someone else changed
    (schemas/reports.py, LeaseHeartbeat)."""
    return {"conditions": without_heartbeats(status["conditions"])}


def _without_heartbeat(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(without_heartbeats(conditions), key=lambda c: str(c.get("type", "")))


def status_changed(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """The kubelet's nodeStatusHasChanged: anything but the conditions' heartbeat times differs."""
    if before is None:
        return True
    if _without_heartbeat(before.get("conditions") or []) != _without_heartbeat(after.get("conditions") or []):
        return True
    rest = {k: v for k, v in before.items() if k != "conditions"}
    return rest != {k: v for k, v in after.items() if k != "conditions"}


def carry_transition_times(status: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``status`` with each condition whose status is unchanged since ``previous`` keeping its
    ``lastTransitionTime``, as the kubelet's condition setters do."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    conditions = []
    for condition in status.get("conditions") or []:
        old = before.get(condition.get("type"))
        kept = old is not None and old.get("status") == condition.get("status") and old.get("lastTransitionTime")
        conditions.append({**condition, "lastTransitionTime": old["lastTransitionTime"]} if kept and old else condition)
    return {**status, "conditions": conditions}


@dataclass
class StatusReporter:
    """The last status computed and the last sent (and when, on a monotonic clock). Not thread-safe: EdgeD's
    node-status thread is its only user."""

    report_s: float = REPORT_S
    _computed: dict[str, Any] | None = field(default=None, init=False)
    _sent: dict[str, Any] | None = field(default=None, init=False)
    _sent_at: float | None = field(default=None, init=False)

    def computed(self, status: dict[str, Any]) -> dict[str, Any]:
        """The status just built, with its conditions' transition times carried over; remembered for the next."""
        status = carry_transition_times(status, self._computed)
        self._computed = status
        return status

    def due(self, status: dict[str, Any], now: float) -> bool:
        """Send ``status`` (as returned by ``computed``) now? Yes when it differs from the last one sent, when
        none was sent yet (or ``forget`` was called), or when ``report_s`` has passed since the last send."""
        if self._sent is None or self._sent_at is None or now - self._sent_at >= self.report_s:
            return True
        return status_changed(self._sent, status)

    def sent(self, status: dict[str, Any], now: float) -> None:
        """``status`` was handed to EdgeHub's outbox at ``now``."""
        self._sent, self._sent_at = status, now

    def forget(self) -> None:
        """What the cloud holds is no longer known (the link came back after the cloud may have marked the node
        Unknown, or EdgeHub or the broker lost what was queued): the next status is sent whatever it says."""
        self._sent = self._sent_at = None
