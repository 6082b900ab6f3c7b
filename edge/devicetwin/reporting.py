"""What of a device's news goes to the cloud, and when: the Device's ``reportToCloud`` and ``reportCycle``.

A property with ``reportToCloud: false`` (or a state under ``stateReport`` without ``reportToCloud: true``)
stays at the edge: devices still read it through the twin, the Device status never shows it. A
``reportCycle`` of N ms lets one new value of that property (or state) up per N ms on average: a value may go
one cycle early once (a credit of one value, earned back over a cycle), so that a source reporting at the
cycle itself (a mapper at its reportCycle), whose values arrive a little early or late, loses none to the
pacing; past the credit the status repeats the value sent last and the device stays pending, so the latest
value goes up once its turn comes. A value after a quiet cycle goes up at once. Without a ``reportCycle`` the node's
default applies (DeviceTwin's ``report_cycle_ms``, 1 s as KubeEdge's mappers): each status is a write to the
API server, and a device that changes flat out would otherwise cost one every report interval. A status the
same as the one sent last does not go again. The times live in memory: after a restart, the first value goes
up at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.devicetwin.store import Device, Twin
from schemas.devices import Reporting

CREDIT = 2.0
"""Values a property may have sent ahead of its cycle, plus the one of the cycle itself."""


@dataclass
class CloudReports:
    clock: Callable[[], float] = time.monotonic
    default_cycle_ms: int = 0
    """The cycle of what sets none (0: every value)."""
    _sent: dict[tuple[str, str], tuple[Any, float, float]] = field(default_factory=dict)
    """(device id, property or "" for the state) -> what went up last, when, and the values' credit left then."""
    _statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Device id -> the status that went up last."""

    def status(self, device: Device, twins: Iterable[Twin]) -> tuple[dict[str, Any], bool]:
        """The Device status to send for ``device``, and whether a newer value waits for its cycle."""
        pending = False
        status: dict[str, Any] = {"twins": []}
        if device.report.state.to_cloud:
            # The Device status says "unknown" for a device that has not reported a state yet, and lower case
            # whatever the device sent ("Online"; the twin keeps it as sent, for devices that read it back).
            now: dict[str, Any] = {"state": device.state.lower() or "unknown"}
            if device.last_online:
                now["lastOnlineTime"] = device.last_online
            sent, waiting = self._paced(device.id, "", now, device.report.state)
            status.update(sent)
            pending |= waiting
        for t in twins:
            entry: dict[str, Any] = {"propertyName": t.prop}
            policy = device.report.of(t.prop)
            if t.actual is not None and policy.to_cloud:
                reported = {"value": t.actual, "metadata": {"timestamp": str(t.actual_ts), "type": t.kind}}
                entry["reported"], waiting = self._paced(device.id, t.prop, reported, policy)
                pending |= waiting
            if t.desired_by_cloud and t.acked_version:
                # Not the device's data but its answer to the cloud's desired value: it goes up whatever
                # reportToCloud says, or the cloud could not tell the value was applied.
                entry["observedDesired"] = {"value": t.expected or "", "metadata": {"version": str(t.acked_version)}}
            status["twins"].append(entry)
        return status, pending

    def is_new(self, device_id: str, status: dict[str, Any]) -> bool:
        """Whether ``status`` differs from what went up last for the device (then it is taken as sent)."""
        if self._statuses.get(device_id) == status:
            return False
        self._statuses[device_id] = status
        return True

    def send_again(self) -> None:
        """Let every status go up again, the same or not (what was sent last may have been lost)."""
        self._statuses.clear()

    def _paced(self, device_id: str, what: str, value: Any, policy: Reporting) -> tuple[Any, bool]:
        """``value`` when it may go up now, else the one sent last; and whether ``value`` still waits."""
        cycle_ms = policy.cycle_ms or self.default_cycle_ms
        if cycle_ms <= 0:
            return value, False
        key = (device_id, what)
        last = self._sent.get(key)
        now = self.clock()
        if last is None:
            self._sent[key] = (value, now, CREDIT - 1)
            return value, False
        sent, at, credit = last
        if sent == value:
            return value, False
        credit = min(CREDIT, credit + (now - at) / (cycle_ms / 1000))
        if credit >= 1:
            self._sent[key] = (value, now, credit - 1)
            return value, False
        return sent, True

    def forget(self, device_id: str) -> None:
        for key in [k for k in self._sent if k[0] == device_id]:
            del self._sent[key]
        self._statuses.pop(device_id, None)
