"""Pod status as a kubelet reports it: phase, conditions, one status per container. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.edged.runtime import Observed
from schemas.timefmt import rfc3339


@dataclass
class ContainerView:
    """What EdgeD knows of one container of a pod, from podman and from its own bookkeeping."""

    name: str
    image: str
    observed: Observed | None
    waiting_reason: str | None
    waiting_message: str
    ready: bool
    last_terminated: dict[str, Any] | None
    message: str = ""
    """The termination message of the container it is in, once it has ended (termination.py)."""
    started: bool = True
    """Its startup probe has passed (or it has none): a running container is reported started."""

    @property
    def restart_count(self) -> int:
        return self.observed.attempt if self.observed is not None else 0


def terminated(observed: Observed, finished_if_unknown: float, message: str = "") -> dict[str, Any]:
    """How a container that ran ended: a container's ``terminated`` state, or its ``lastState`` once restarted.

    ``finished_if_unknown`` is the end reported when podman gave the container no exit time: its start for
    the state it is in (it ran for no known time), the kubelet's pass for the last state of one it restarts
    (the moment the kubelet saw it had ended). ``message``: its termination message, if it left one.
    """
    return {
        "exitCode": observed.exit_code,
        "reason": "Completed" if observed.exit_code == 0 else "Error",
        **({"message": message} if message else {}),
        "startedAt": rfc3339(observed.started_at),
        "finishedAt": rfc3339(observed.finished_at or finished_if_unknown),
        "containerID": f"podman://{observed.id}",
    }


STOPPED_FOR_DELETION: dict[str, Any] = {"exitCode": 0, "reason": "Completed"}
"""The state of a container EdgeD stopped because its pod is being deleted: podman removes it with the pod,
so no exit code or time of its own is left to report."""


def container_status(view: ContainerView, *, deleting: bool = False) -> dict[str, Any]:
    """``deleting``: the pod is being deleted, and EdgeD has stopped this container for it."""
    observed = view.observed
    state: dict[str, Any]
    if deleting:
        state = {"terminated": dict(STOPPED_FOR_DELETION)}
    elif view.waiting_reason is not None:
        state = {"waiting": {"reason": view.waiting_reason, **({"message": view.waiting_message}
                                                                 if view.waiting_message else {})}}
    elif observed is not None and observed.running:
        state = {"running": {"startedAt": rfc3339(observed.started_at)}}
    elif observed is not None and observed.finished:
        state = {"terminated": terminated(observed, observed.started_at, view.message)}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    status: dict[str, Any] = {
        "name": view.name,
        "state": state,
        "lastState": {"terminated": view.last_terminated} if view.last_terminated else {},
        "ready": bool(view.ready and observed is not None and observed.running),
        "restartCount": view.restart_count,
        "image": view.image,
        "imageID": observed.image_id if observed is not None else "",
        "started": bool(view.started and observed is not None and observed.running),
    }
    if observed is not None:
        status["containerID"] = f"podman://{observed.id}"
    return status


def init_container_status(view: ContainerView, *, deleting: bool = False) -> dict[str, Any]:
    """An init container is ready once it has succeeded, and (as kubelet's) reports no ``started``."""
    status = container_status(view, deleting=deleting)
    ended = status["state"].get("terminated")
    status["ready"] = bool(ended and ended["exitCode"] == 0)
    del status["started"]
    return status


def init_phase(restart_policy: str, init_statuses: list[dict[str, Any]]) -> str | None:
    """The phase while the init containers have not all succeeded (None once they have): Pending, or Failed
    once one failed and will not be restarted."""
    pending = failed = 0
    for s in init_statuses:
        ended = s["state"].get("terminated") or (s["lastState"].get("terminated") if "waiting" in s["state"]
                                                 else None)
        if ended is None:
            pending += 1
        elif ended["exitCode"] != 0:
            failed += 1
    if failed and restart_policy == "Never":
        return "Failed"
    return "Pending" if pending or failed else None


def phase(restart_policy: str, statuses: list[dict[str, Any]], *, deleting: bool = False) -> str:
    if deleting:  # a pod meant to run for ever (Always) did not succeed by being stopped
        return "Succeeded" if restart_policy != "Always" else "Failed"
    states = [next(iter(s["state"])) for s in statuses]
    if any(s == "running" for s in states):
        return "Running"
    ended = [s["state"]["terminated"] for s in statuses if "terminated" in s["state"]]
    if len(ended) == len(statuses):
        if all(t["exitCode"] == 0 for t in ended):
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
    ever_ran = any(s["restartCount"] > 0 or "terminated" in s["state"] or s["lastState"] for s in statuses)
    return "Running" if ever_ran and restart_policy != "Never" else "Pending"


def condition(kind: str, ok: bool, since: str, reason: str = "", message: str = "") -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": since}
    if reason and not ok:
        entry["reason"] = reason
        if message:
            entry["message"] = message
    return entry


def pod_status(restart_policy: str, views: list[ContainerView], *, pod_ip: str, host_ip: str, start_time: str,
               since: str, deleting: bool = False, init_views: list[ContainerView] | None = None) -> dict[str, Any]:
    """The status of a pod from what EdgeD knows of each container; ``deleting``: it is being deleted;
    ``init_views``: its init containers, in order."""
    statuses = [container_status(v, deleting=deleting) for v in views]
    init_statuses = [init_container_status(v, deleting=deleting) for v in init_views or []]
    all_ready = all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    reason = "ContainersNotReady" if not_ready else ""
    incomplete = [s["name"] for s in init_statuses if not s["ready"]]
    status: dict[str, Any] = {
        "phase": (None if deleting else init_phase(restart_policy, init_statuses))
        or phase(restart_policy, statuses, deleting=deleting),
        "conditions": [
            condition("Initialized", not incomplete, since, "ContainersNotInitialized",
                      f"containers with incomplete status: [{' '.join(incomplete)}]"),
            condition("Ready", all_ready, since, reason),
            condition("ContainersReady", all_ready, since, reason),
            condition("PodScheduled", True, since),
        ],
        "hostIP": host_ip,
        "startTime": start_time,
        **({"initContainerStatuses": init_statuses} if init_statuses else {}),
        "containerStatuses": statuses,
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status


def failed_status(reason: str, message: str, host_ip: str, start_time: str) -> dict[str, Any]:
    """A pod that cannot run on this node at all."""
    return {"phase": "Failed", "reason": reason, "message": message, "hostIP": host_ip, "startTime": start_time,
            "conditions": [condition("PodScheduled", True, start_time)], "containerStatuses": []}


def deleted_status(restart_policy: str, containers: list[tuple[str, str]], *, host_ip: str,
                   start_time: str, init_containers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """A pod being deleted, whose containers (name, image) EdgeD has stopped and removed with it."""
    views = [ContainerView(name, image, None, None, "", False, None) for name, image in containers]
    init_views = [ContainerView(name, image, None, None, "", False, None) for name, image in init_containers or []]
    return pod_status(restart_policy, views, pod_ip="", host_ip=host_ip, start_time=start_time, since=start_time,
                      deleting=True, init_views=init_views)


def waiting_status(pod: dict[str, Any], reason: str, message: str, host_ip: str, start_time: str) -> dict[str, Any]:
    """A pod that cannot be planned yet (a ConfigMap or Secret it needs is missing): every container waits
    with ``reason``, or, when it has init containers, they do and the app containers wait for them."""
    spec = pod.get("spec") or {}
    init = spec.get("initContainers") or []

    def waiting(containers: list[dict[str, Any]], why: str, said: str) -> list[ContainerView]:
        return [ContainerView(str(c.get("name")), str(c.get("image", "")), None, why, said, False, None)
                for c in containers]
    views = (waiting(spec.get("containers") or [], "PodInitializing", "") if init
             else waiting(spec.get("containers") or [], reason, message))
    return pod_status(spec.get("restartPolicy", "Always"), views, pod_ip="", host_ip=host_ip, start_time=start_time,
                      since=start_time, init_views=waiting(init, reason, message))
