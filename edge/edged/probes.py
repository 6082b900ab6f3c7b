"""Startup, liveness and readiness probes as a kubelet runs them: when each is due, and what a run of results
means. No I/O here: the clock and the running of a probe come in (edge/edged/handlers.py runs them).

Each probe of a container keeps its own schedule (first run after initialDelaySeconds from the container's
start, then every periodSeconds) and its own result, which changes only after successThreshold successes or
failureThreshold failures in a row. Before its first change a readiness result is failure (not ready), a
liveness result success and a startup result unknown. While a startup probe has not succeeded, liveness and
readiness are not run and the container is neither started nor ready; once it has, it runs no more. A
liveness or startup result of failure means the container is to be killed; that probe then waits for the
next container (a restart starts from a fresh ProbeState), as kubelet's does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edge.edged.handlerspec import Probe
from edge.edged.podspec import ContainerPlan

KINDS = ("startup", "liveness", "readiness")
"""In the order they are looked at in one pass: startup first, since it gates the other two."""

INITIAL: dict[str, bool | None] = {"startup": None, "liveness": True, "readiness": False}


@dataclass
class ProbeTrack:
    """One probe of one container (a kubelet's prober worker)."""

    result: bool | None
    last: bool | None = None
    run: int = 0
    """How many results in a row have been ``last``."""
    next_at: float | None = None
    on_hold: bool = False
    """It has asked for the container to be killed: nothing more until the next container."""


@dataclass
class ProbeState:
    """One container's probe results; a new container (a restart) starts from a fresh one."""

    tracks: dict[str, ProbeTrack] = field(default_factory=dict)

    def started(self, container: ContainerPlan) -> bool:
        """A container without a startup probe is started when it runs; one with it, once the probe passed."""
        return container.startup is None or self._result(container, "startup") is True

    def ready(self, container: ContainerPlan) -> bool:
        """Ready once started and (if it has a readiness probe) once that probe passed.

        kubelet 1.20 reports a container that has a startup probe but no readiness probe ready before its
        startup probe passed; here it is not: a container still starting should get no traffic, which is
        what a user adds a startup probe for."""
        if not self.started(container):
            return False
        return container.readiness is None or self._result(container, "readiness") is True

    def _result(self, container: ContainerPlan, kind: str) -> bool | None:
        track = self.tracks.get(kind)
        return track.result if track is not None else INITIAL[kind]


def probe_of(container: ContainerPlan, kind: str) -> Probe | None:
    probe: Probe | None = getattr(container, kind)
    return probe


def run_due_probes(state: ProbeState, container: ContainerPlan, started_at: float, now: float,
                   run: Callable[[Probe], bool]) -> tuple[str, Probe] | None:
    """Run the container's probes that are due at ``now``, with ``run``; updates ``state``.

    Returns the kind and probe (liveness or startup) whose result just became failure: the caller kills the
    container (with the probe's terminationGracePeriodSeconds if it has one); None otherwise.
    """
    for kind in KINDS:
        probe = probe_of(container, kind)
        if probe is None:
            continue
        track = state.tracks.setdefault(kind, ProbeTrack(INITIAL[kind]))
        if track.on_hold:
            continue
        if track.next_at is None:
            track.next_at = started_at + probe.initial_delay_s
        if now < track.next_at:
            continue
        track.next_at = now + probe.period_s
        started = state.started(container)
        if (kind == "startup") == started:  # startup runs until it passed; the others only after
            continue
        ok = run(probe)
        if ok == track.last:
            track.run += 1
        else:
            track.last, track.run = ok, 1
        if track.run < (probe.success_threshold if ok else probe.failure_threshold):
            continue  # below the threshold: the result stands
        track.result = ok
        if not ok and kind != "readiness":
            track.on_hold, track.run = True, 0
            return kind, probe
    return None
