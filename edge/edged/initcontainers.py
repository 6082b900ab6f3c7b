"""Init containers as kubelet runs them: in order, each to completion (exit 0) before the next, all before the
app containers. No I/O here.

Whether one has completed is read from podman, not remembered: an init container that exited 0 stays in its
podman pod until the pod is removed, so a restarted EdgeD sees the pod initialised and runs none of them
again, while a pod made again (its sandbox gone) has none and runs them all again, as kubelet does for a new
sandbox. One that failed is restarted as the pod's restartPolicy says (Always and OnFailure both restart a
failed init container; neither restarts a completed one); under Never the pod has failed.
"""

from __future__ import annotations

from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.runtime import Observed


def succeeded(observed: Observed | None) -> bool:
    return observed is not None and observed.finished and observed.exit_code == 0


def next_init(plan: PodPlan, latest: dict[str, Observed]) -> ContainerPlan | None:
    """The first init container that has not succeeded yet; None once all have (the app containers may run)."""
    for container in plan.init_containers:
        if not succeeded(latest.get(container.name)):
            return container
    return None


def restarts(container: ContainerPlan, restart_policy: str, exit_code: int) -> bool:
    """Whether a container that ended with ``exit_code`` is started again."""
    if container.init:
        return exit_code != 0 and restart_policy != "Never"
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)
