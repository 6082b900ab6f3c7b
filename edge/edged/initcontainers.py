"""Init containers as kubelet runs them: in order, each to completion (exit 0) before the next, all before the
app containers. No I/O here.

Whether one has completed is read from podman, not remembered: an init container that exited 0 stays in its
podman pod until the pod is removed, so a restarted EdgeD sees the pod initialised and runs none of them
again, while a pod made again (its sandbox gone) has none and runs them all again, as kubelet does for a new
sandbox (a pod whose sandbox stopped, after a reboot of the machine, is made again for that: see
``runs_again``). One that failed is restarted as the pod's restartPolicy says (Always and OnFailure both restart a
failed init container; neither restarts a completed one); under Never the pod has failed.
"""

from __future__ import annotations

from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.runtime import Observed
from edge.restarts import restarts as policy_restarts
from edge.restarts import restarts_on


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
    return policy_restarts(restarts_on(restart_policy, container.init), exit_code)


def runs_again(plan: PodPlan, latest: dict[str, Observed]) -> bool:
    """Whether a pod with init containers, none of whose containers runs, would start one again, so that a
    sandbox found stopped must be made anew (its init containers first), as kubelet makes a new sandbox.
    A pod that has finished (nothing to restart under its policy) is left as it ended."""
    if not plan.init_containers or any(o.running for o in latest.values()):
        return False
    failed_init = any(o.finished and o.exit_code != 0 for c in plan.init_containers
                      if (o := latest.get(c.name)) is not None)
    if failed_init:
        return plan.restart_policy != "Never"
    for container in plan.containers:
        ended = latest.get(container.name)
        if ended is None or (ended.finished and restarts(container, plan.restart_policy, ended.exit_code)):
            return True
    return False
