"""Whether a container that ended is started again, as the kubelet decides it: the one rule EdgeD restarts by
and the node's stream end reads a container's last state by (``kubectl logs --previous``).

EdgeD labels each container with what its restart depends on besides its exit code (``RESTARTS_ON_LABEL``):
``always``, ``failure`` or ``never``, from the pod's restartPolicy and whether it is an init container. The
stream end then needs neither the pod spec nor EdgeD to know whether a container that ended waits for its
restart (then it is the container's last state, as in CrashLoopBackOff) or has ended for good.
"""

from __future__ import annotations

ALWAYS, FAILURE, NEVER = "always", "failure", "never"


def restarts_on(restart_policy: str, init: bool) -> str:
    """An init container is started again only after a failure, and never under Never; an app container as
    its pod's restartPolicy says."""
    if restart_policy == "Never":
        return NEVER
    return FAILURE if init or restart_policy == "OnFailure" else ALWAYS


def restarts(on: str, exit_code: int) -> bool:
    return on == ALWAYS or (on == FAILURE and exit_code != 0)
