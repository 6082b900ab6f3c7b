"""A component's retained status (``edgehive/status/<module>``, or ``edgehive/status/<module>/<replica>`` for one of
several replicas that run at once): whether it is up, and which process it is.

Other components follow it to notice a restart (a new pid): EdgeD and DeviceTwin list MetaManager's
store again then, since a forward may have been lost with the old process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.fields import STRICT

UP = "up"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    state: str
    """``up`` while it runs; ``down`` (its will, or its last word)."""
    pid: int | None
    started: int | None = None
    """When the process started (seconds since the epoch), in the status it publishes once up."""
    reason: str | None = None
    """Why it is down, in its will (``connection lost``)."""
    replica: str | None = None
    """Which replica of the component, when several run at once (each on a status topic of its own)."""

    @property
    def up(self) -> bool:
        return self.state == UP

    @classmethod
    def parse(cls, body: Any) -> ComponentStatus:
        found = STRICT.body(body)
        return cls(STRICT.required_text(found.get("state"), "body.state"), STRICT.integer(found.get("pid"), "body.pid"),
                   replica=STRICT.text(found.get("replica"), "body.replica"))

    def as_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "pid": self.pid}
        if self.started is not None:
            body["started"] = self.started
        if self.reason is not None:
            body["reason"] = self.reason
        if self.replica is not None:
            body["replica"] = self.replica
        return body
