"""What of a device's news goes to the cloud, and when: the Device's ``reportToCloud`` and ``reportCycle``.

A property with ``reportToCloud: false`` (or a state under ``stateReport`` without ``reportToCloud: true``)
stays at the edge: devices still read it through the twin, the Device status never shows it. A
``reportCycle`` of N ms lets at most one new value of that property (or state) up per N ms: until the cycle
has passed, the status repeats the value sent last and the device stays pending, so the latest value goes
up once the cycle ends. The times live in memory: after a restart, the first value goes up at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.devicetwin.store import Device, Twin
from schemas.devices import Reporting


@dataclass
class CloudReports:
    clock: Callable[[], float] = time.monotonic
    _sent: dict[tuple[str, str], tuple[Any, float]] = field(default_factory=dict)
    """(device id, property or "" for the state) -> what went up last, and when."""

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

    def _paced(self, device_id: str, what: str, value: Any, policy: Reporting) -> tuple[Any, bool]:
        """``value`` when it may go up now, else the one sent last; and whether ``value`` still waits."""
        if policy.cycle_ms <= 0:
            return value, False
        key = (device_id, what)
        last = self._sent.get(key)
        now = self.clock()
        if last is None or now - last[1] >= policy.cycle_ms / 1000:
            if last is None or last[0] != value:
                self._sent[key] = (value, now)
            return value, False
        return last[0], last[0] != value

    def forget(self, device_id: str) -> None:
        for key in [k for k in self._sent if k[0] == device_id]:
            del self._sent[key]
