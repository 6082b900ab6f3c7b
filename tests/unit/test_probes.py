"""Probes as a kubelet runs them, on an injected clock: each probe's initial delay and period, results that
change only at successThreshold/failureThreshold in a row, a startup probe gating the other two, and a
liveness or startup failure asking for the container to be killed (once, until the next container)."""

from __future__ import annotations

from collections.abc import Callable

from edge.edged.handlerspec import Handler, Probe
from edge.edged.podspec import ContainerPlan
from edge.edged.probes import ProbeState, run_due_probes


def probe(name: str, **timing: int) -> Probe:
    return Probe(Handler("exec", command=(name,)), **timing)


def container(liveness: Probe | None = None, readiness: Probe | None = None,
              startup: Probe | None = None) -> ContainerPlan:
    return ContainerPlan(name="app", image="localhost/busybox:1", pull_policy="IfNotPresent", entrypoint=None,
                         command=None, env={}, mounts=[], working_dir=None, mem_limit=None, nano_cpus=None,
                         spec_hash="h", liveness=liveness, readiness=readiness, startup=startup)


class Answers:
    """Answers each probe (by its command) from a script of results, and records what was asked when."""

    def __init__(self, **scripts: list[bool]) -> None:
        self.scripts = scripts
        self.asked: list[str] = []

    def __call__(self, p: Probe) -> bool:
        name = p.handler.command[0]
        self.asked.append(name)
        return self.scripts[name].pop(0)


def tick(state: ProbeState, plan: ContainerPlan, now: float, run: Callable[[Probe], bool]) -> str | None:
    failed = run_due_probes(state, plan, started_at=100, now=now, run=run)
    return failed[0] if failed is not None else None


def test_each_probe_waits_its_initial_delay_then_runs_every_period() -> None:
    state, run = ProbeState(), Answers(live=[True] * 5, ready=[True] * 5)
    plan = container(liveness=probe("live", initial_delay_s=5, period_s=2),
                     readiness=probe("ready", initial_delay_s=1, period_s=3))
    for now in (100, 100.5, 101, 102, 103, 104, 105, 106, 107):
        tick(state, plan, now, run)
    # readiness at 101, 104, 107; liveness at 105, 107
    assert run.asked == ["ready", "ready", "live", "live", "ready"]


def test_liveness_kills_at_its_failure_threshold_then_holds_until_the_next_container() -> None:
    state, run = ProbeState(), Answers(live=[False, True, False, False, False])
    plan = container(liveness=probe("live", period_s=1, failure_threshold=2))
    assert [tick(state, plan, now, run) for now in (100, 101, 102, 103, 104, 105)] == \
        [None, None, None, "liveness", None, None]
    assert run.asked == ["live"] * 4  # nothing after the kill was asked for
    fresh = ProbeState()  # the restarted container
    assert tick(fresh, plan, 106, Answers(live=[False])) is None


def test_readiness_changes_only_after_its_thresholds_in_a_row() -> None:
    state = ProbeState()
    run = Answers(ready=[True, False, True, True, False, True, False, False])
    plan = container(readiness=probe("ready", period_s=1, success_threshold=2, failure_threshold=2))
    seen = []
    for now in range(100, 108):
        tick(state, plan, now, run)
        seen.append(state.ready(plan))
    assert seen == [False, False, False, True, True, True, True, False]


def test_a_startup_probe_gates_liveness_and_readiness() -> None:
    state = ProbeState()
    run = Answers(start=[False, False, True], live=[True, True], ready=[True, True])
    plan = container(liveness=probe("live", period_s=1), readiness=probe("ready", period_s=1),
                     startup=probe("start", period_s=1, failure_threshold=5))
    for now in (100, 101):
        tick(state, plan, now, run)
        assert not state.started(plan)
        assert not state.ready(plan)
    assert run.asked == ["start", "start"]
    tick(state, plan, 102, run)  # startup passes: the others run from here on, startup no more
    assert state.started(plan)
    assert state.ready(plan)
    tick(state, plan, 103, run)
    assert run.asked == ["start", "start", "start", "live", "ready", "live", "ready"]


def test_a_startup_probe_that_never_passes_kills_the_container() -> None:
    state, run = ProbeState(), Answers(start=[False] * 3)
    plan = container(startup=probe("start", period_s=1, failure_threshold=3), readiness=probe("ready"))
    assert [tick(state, plan, now, run) for now in (100, 101, 102)] == [None, None, "startup"]
    assert not state.ready(plan)


def test_without_a_readiness_probe_a_started_container_is_ready() -> None:
    assert ProbeState().ready(container())
    assert ProbeState().ready(container(liveness=probe("live")))
    assert not ProbeState().ready(container(startup=probe("start")))
