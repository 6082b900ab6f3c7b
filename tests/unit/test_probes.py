"""Probes as a kubelet runs them: the initial delay, the period, readiness's successThreshold and
liveness's failureThreshold (reached: the container is to be restarted, and the count starts over)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.edged.podspec import ContainerPlan
from edge.edged.probes import NO_PROBE_PERIOD_S, ProbeState, run_due_probes


def container(liveness: dict[str, Any] | None = None, readiness: dict[str, Any] | None = None) -> ContainerPlan:
    return ContainerPlan(name="app", image="localhost/busybox:1", pull_policy="IfNotPresent", entrypoint=None,
                         command=None, env={}, mounts=[], working_dir=None, mem_limit=None, nano_cpus=None,
                         spec_hash="h", liveness=liveness, readiness=readiness)


def answers(*results: bool) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], bool]]:
    asked: list[dict[str, Any]] = []
    queue = list(results)

    def run(probe: dict[str, Any]) -> bool:
        asked.append(probe)
        return queue.pop(0)
    return asked, run


def test_nothing_runs_before_the_initial_delay() -> None:
    state = ProbeState()
    asked, run = answers()
    plan = container(liveness={"exec": {}, "initialDelaySeconds": 5, "periodSeconds": 2})
    assert run_due_probes(state, plan, started_at=100, now=103, run=run) == 0
    assert asked == []
    assert state.next_at == 105


def test_liveness_restarts_at_its_failure_threshold_and_starts_over() -> None:
    state = ProbeState()
    plan = container(liveness={"exec": {}, "failureThreshold": 2, "periodSeconds": 1})
    _, run = answers(False, False, False)
    assert run_due_probes(state, plan, 0, 10, run) == 0
    assert run_due_probes(state, plan, 0, 10.5, run) == 0  # not due yet: the period is 1 s
    assert run_due_probes(state, plan, 0, 11, run) == 2
    assert state.liveness_failures == 0
    assert run_due_probes(state, plan, 0, 12, run) == 0


def test_readiness_needs_its_success_threshold_in_a_row() -> None:
    state = ProbeState()
    plan = container(readiness={"httpGet": {}, "successThreshold": 2, "periodSeconds": 1})
    _, run = answers(True, False, True, True)
    for now, ready in ((1, False), (2, False), (3, False), (4, True)):
        run_due_probes(state, plan, 0, now, run)
        assert state.ready is ready, now


def test_a_container_without_probes_is_looked_at_rarely() -> None:
    state = ProbeState()
    asked, run = answers()
    assert run_due_probes(state, container(), 0, 10, run) == 0
    assert asked == []
    assert state.next_at == 10 + NO_PROBE_PERIOD_S
