"""Lifecycle hooks as kubelet runs them: postStart right after a container starts, preStop before its stop
signal, and the stop itself, whose grace period the preStop hook's time counts against.

postStart is waited for as long as it takes (kubelet sets it no limit either); when it fails the container is
killed, as kubelet's FailedPostStartHook, and restarted as its pod's restartPolicy says. preStop gets the
grace period: after it returns (or the grace period is used up, the hook then left to run on) the container
is sent its stop signal with what is left, at least MIN_GRACE_AFTER_HOOK_S, kubelet's minimum, so that a hook
that took the whole period does not turn the stop into a SIGKILL at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.edged.handlers import Outcome, run_handler
from edge.edged.podspec import ContainerPlan
from edge.edged.runtime import PodmanRuntime

log = logging.getLogger(__name__)

MIN_GRACE_AFTER_HOOK_S = 2
HTTP_HOOK_TIMEOUT_S = 10.0
"""A postStart GET that hangs is given up after this (a command in the container is waited for)."""

Address = Callable[[], str]


def post_start(runtime: PodmanRuntime, container_id: str, container: ContainerPlan, address: Address) -> str:
    """Run the container's postStart hook; returns why it failed, or "" (also when it has none)."""
    hook = container.post_start
    if hook is None:
        return ""
    outcome = run_handler(runtime, container_id, hook, address,
                          HTTP_HOOK_TIMEOUT_S if hook.action == "httpGet" else None)
    if outcome.ok:
        return ""
    return f"{'Exec' if hook.action == 'exec' else 'HTTP'} lifecycle hook for container {container.name} failed: " \
           f"{outcome.message}"


def pre_stop(runtime: PodmanRuntime, running: list[tuple[str, ContainerPlan]], grace_s: int,
             address: Address) -> int:
    """Run the preStop hooks of ``running`` (container id, plan) at once, each within ``grace_s``; returns the
    grace period left for the stop signal."""
    hooked = [(cid, c) for cid, c in running if c.pre_stop is not None]
    if not hooked or grace_s <= 0:
        return grace_s
    started = time.monotonic()
    threads = []
    for container_id, container in hooked:
        thread = threading.Thread(target=_pre_stop_one, args=(runtime, container_id, container, grace_s, address),
                                  name=f"prestop-{container.name}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, started + grace_s - time.monotonic()))
    used = int(time.monotonic() - started)
    return max(MIN_GRACE_AFTER_HOOK_S, grace_s - used)


def _pre_stop_one(runtime: PodmanRuntime, container_id: str, container: ContainerPlan, grace_s: int,
                  address: Address) -> None:
    assert container.pre_stop is not None
    outcome: Outcome = run_handler(runtime, container_id, container.pre_stop, address, float(grace_s))
    if not outcome.ok:  # kubelet only records it: the container is stopped all the same
        log.warning("preStop hook of container %s (%s) failed: %s", container.name, container_id[:12],
                    outcome.message)


def stop_container(runtime: PodmanRuntime, container_id: str, container: ContainerPlan, grace_s: int,
                   address: Address) -> None:
    """Stop one container as kubelet kills it: its preStop hook, then the stop signal with the rest."""
    left = pre_stop(runtime, [(container_id, container)], grace_s, address)
    runtime.stop_container(container_id, left)


def remove_pod(runtime: PodmanRuntime, podman_name: str, running: list[tuple[str, ContainerPlan]],
               grace_s: int, address: Address) -> None:
    """Stop and remove a pod: the preStop hooks of its running containers, then the stop with the rest."""
    left = pre_stop(runtime, running, grace_s, address)
    runtime.remove_pod(podman_name, left)
