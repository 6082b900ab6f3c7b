"""What EdgeD remembers about each pod between passes (rebuilt from podman after a restart), and the small
facts read from podman's list that the kubelet's pass works from: each container's newest attempt, the
running ones, and how long to wait before a restart.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.probes import ProbeState
from edge.edged.runtime import Observed
from edge.restarts import restarts, restarts_on
from schemas.resource import ResourceKey

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_AFTER_S = 600.0


def restart_delay(attempt: int) -> float:
    """Before starting attempt ``attempt`` (1 = first restart): none, then 10 s doubling to 300 s."""
    if attempt <= 1:
        return 0.0
    return float(min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (attempt - 2)))


@dataclass
class ContainerBook:
    waiting_reason: str | None = None
    waiting_message: str = ""
    next_start_at: float = 0.0
    pull_failures: int = 0
    next_pull_at: float = 0.0
    pull_credentials: tuple[Any, ...] = ()  # what the last pull had (a change ends its back-off)
    pull_error: str = ""
    probes: ProbeState = field(default_factory=ProbeState)
    last_terminated: dict[str, Any] | None = None
    creating: int = 0
    """The attempt last created: until podman shows it started, the container is ContainerCreating."""
    message: tuple[str, str] = ("", "")
    """(container id, its termination message): read once per ended container."""


REPLAN_COST_FACTOR = 4.0
"""While only a pod's ConfigMaps and Secrets change, its planning takes at most 1/(1+this) of a core."""


@dataclass
class PodWorker:
    """Everything EdgeD remembers about one pod between passes; rebuilt from podman after a restart."""

    key: ResourceKey
    uid: str
    started: float = field(default_factory=time.time)
    books: dict[str, ContainerBook] = field(default_factory=dict)
    pod_started: bool = False
    terminated: bool = False
    last_status: dict[str, Any] | None = None
    plan: PodPlan | None = None
    plan_signature: tuple[str, int, int] | None = None
    planned_at: float = 0.0
    """When ``plan`` was made (time.monotonic)."""
    plan_cost_s: float = 0.0
    """How long making ``plan`` took."""
    busy: Future[None] | None = None
    pod_ip: str = ""
    """The pod's address once podman gave one; forgotten when the podman pod is made again."""
    remake: bool = False
    """The podman pod is there but takes no container (half made when power or EdgeD died): make it again."""

    def book(self, name: str) -> ContainerBook:
        return self.books.setdefault(name, ContainerBook())

    def plan_stands(self, signature: tuple[str, int, int], now: float) -> bool:
        """Whether the pass at ``now`` keeps the pod's plan for ``signature`` (kubelet.py's signature: the pod's
        resourceVersion, its ConfigMaps' and Secrets' versions, its token stamp): when nothing changed; and, while
        only its ConfigMaps and Secrets change, until ``REPLAN_COST_FACTOR`` times the last planning's cost has
        passed. A pod projecting thousands of ConfigMaps takes tens of ms to plan; made again on each change of a
        burst of a thousand, it kept a core of the node busy. Its files now trail the burst by a few plannings
        (the next pass plans again, at most a second later); kubelet's trail a ConfigMap change by a minute."""
        if self.plan is None or self.plan_signature is None:
            return False
        if self.plan_signature == signature:
            return True
        only_config = (signature[0], signature[2]) == (self.plan_signature[0], self.plan_signature[2])
        return only_config and now - self.planned_at < REPLAN_COST_FACTOR * self.plan_cost_s


def newest_attempts(observed: list[Observed]) -> dict[str, Observed]:
    """Each container's newest attempt."""
    newest: dict[str, Observed] = {}
    for o in observed:
        if o.container not in newest or o.attempt > newest[o.container].attempt:
            newest[o.container] = o
    return newest


def running_containers(plan: PodPlan, latest: dict[str, Observed]) -> list[tuple[str, ContainerPlan]]:
    """(container id, plan) of the pod's running containers: those a stop of the pod runs preStop hooks in."""
    return [(o.id, c) for c in [*plan.init_containers, *plan.containers]
            if (o := latest.get(c.name)) is not None and o.running]


def previous_attempts(observed: list[Observed]) -> dict[str, Observed]:
    """Each container's previous instance: its newest attempt before the newest that ran and ended. EdgeD keeps
    one (as the kubelet keeps a dead container) for ``kubectl logs --previous`` and the container's last state."""
    newest = newest_attempts(observed)
    previous: dict[str, Observed] = {}
    for o in observed:
        if o.finished and o.attempt < newest[o.container].attempt and (
                o.container not in previous or o.attempt > previous[o.container].attempt):
            previous[o.container] = o
    return previous


def superseded(observed: list[Observed], container: str, kept: int) -> list[Observed]:
    """The instances of ``container`` older than attempt ``kept``: once ``kept`` is the previous instance (a new
    attempt was made), they are no one's previous and are removed."""
    return [o for o in observed if o.container == container and o.attempt < kept]


def restart_policy(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


def ended(policy: str, observed: list[Observed]) -> bool:
    """Whether a pod has ended for good: every container's newest instance finished, and none is started again
    under ``policy``. One whose containers all ended but restart (the cut's SIGKILL recorded, exit 137, under
    Always) still needs its sandbox: left alone, each restart failed on the dead one's namespaces, for ever."""
    latest = newest_attempts(observed).values()
    return bool(latest) and all(o.finished and not restarts(restarts_on(policy, False), o.exit_code) for o in latest)
