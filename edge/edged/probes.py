"""Liveness and readiness probes, as a kubelet runs them: when they are due, what their results mean, and
running one (a command in the container, or an HTTP GET).

A probe that fails to run (podman refuses the exec, the address does not answer) counts as failed, as
kubelet's does: the container is what is being asked about, not the probe.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.edged.podspec import ContainerPlan
from edge.edged.runtime import ContainerRuntimeError, PodmanRuntime

NO_PROBE_PERIOD_S = 3600.0
"""How long to wait before looking again at a container that has no probe (nothing will change)."""


@dataclass
class ProbeState:
    """One container's probe results; a new container (a restart) starts from a fresh one."""

    liveness_failures: int = 0
    readiness_successes: int = 0
    ready: bool = False
    next_at: float = 0.0


def run_due_probes(state: ProbeState, container: ContainerPlan, started_at: float, now: float,
                   run: Callable[[dict[str, Any]], bool]) -> int:
    """Run the container's probes if they are due, with ``run``; updates ``state``.

    Returns how many liveness probes failed in a row when that reached the probe's failureThreshold, so
    that the caller restarts the container (and the count starts over); 0 otherwise.
    """
    if now < state.next_at:
        return 0
    liveness, readiness = container.liveness, container.readiness
    period = float(min(p.get("periodSeconds", 10) for p in (liveness, readiness) if p) if (liveness or readiness)
                   else NO_PROBE_PERIOD_S)
    delay = float(min(p.get("initialDelaySeconds", 0) for p in (liveness, readiness) if p)
                  if (liveness or readiness) else 0)
    if now - started_at < delay:
        state.next_at = started_at + delay
        return 0
    state.next_at = now + period
    if readiness is not None:
        if run(readiness):
            state.readiness_successes += 1
            state.ready = state.readiness_successes >= int(readiness.get("successThreshold", 1))
        else:
            state.readiness_successes = 0
            state.ready = False
    if liveness is not None:
        if run(liveness):
            state.liveness_failures = 0
        else:
            state.liveness_failures += 1
            if state.liveness_failures >= int(liveness.get("failureThreshold", 3)):
                failures, state.liveness_failures = state.liveness_failures, 0
                return failures
    return 0


def run_probe(runtime: PodmanRuntime, container_id: str, probe: dict[str, Any], pod_address: Callable[[], str]) -> bool:
    """One probe: ``exec`` passes on exit code 0, ``httpGet`` on a 2xx or 3xx answer. ``pod_address`` is
    asked only for a GET that names no host (it may cost a call to podman)."""
    if "exec" in probe:
        command = [str(c) for c in (probe["exec"] or {}).get("command") or []]
        try:
            code, _ = runtime.exec(container_id, command)
        except ContainerRuntimeError:
            return False
        return code == 0
    get = probe["httpGet"] or {}
    host = get.get("host") or pod_address()
    url = f"{str(get.get('scheme', 'HTTP')).lower()}://{host}:{get.get('port')}{get.get('path', '/')}"
    try:
        with urllib.request.urlopen(url, timeout=float(probe.get("timeoutSeconds", 1))) as response:
            return bool(200 <= response.status < 400)
    except (OSError, ValueError):
        return False
