"""What EdgeD remembers about each pod between passes (rebuilt from podman after a restart), and the small
facts read from podman's list that the kubelet's pass works from: each container's newest attempt, the
running ones, and how long to wait before a restart.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.probes import ProbeState
from edge.edged.runtime import Observed
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
    message: tuple[str, str] = ("", "")
    """(container id, its termination message): read once per ended container."""


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
    busy: Future[None] | None = None
    remake: bool = False
    """The podman pod is there but takes no container (half made when power or EdgeD died): make it again."""

    def book(self, name: str) -> ContainerBook:
        return self.books.setdefault(name, ContainerBook())


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
