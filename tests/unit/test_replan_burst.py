"""A pod's plan is made again when it changes; during a burst of changes to its ConfigMaps alone, no more often
than a few times what planning it costs (edge/edged/podworker.py's ``plan_stands``)."""

from __future__ import annotations

from typing import cast

from edge.edged.podspec import PodPlan
from edge.edged.podworker import REPLAN_COST_FACTOR, PodWorker
from tests.support.kubelet_fakes import KEY, UID

PLANNED = ("7", 10, 0)  # the pod's resourceVersion, its ConfigMaps' versions summed, its token stamp


def planned(cost_s: float, at: float = 100.0) -> PodWorker:
    worker = PodWorker(KEY, UID)
    worker.plan, worker.plan_signature = cast(PodPlan, object()), PLANNED
    worker.planned_at, worker.plan_cost_s = at, cost_s
    return worker


def test_an_unchanged_pod_keeps_its_plan_however_long_ago_it_was_made() -> None:
    assert planned(0.05).plan_stands(PLANNED, now=1e9)


def test_a_config_change_waits_out_a_few_times_the_planning_cost_then_plans_again() -> None:
    worker = planned(cost_s=0.05)
    changed = ("7", 11, 0)
    assert worker.plan_stands(changed, now=100.0 + 0.05)
    assert worker.plan_stands(changed, now=100.0 + REPLAN_COST_FACTOR * 0.05 - 0.001)
    assert not worker.plan_stands(changed, now=100.0 + REPLAN_COST_FACTOR * 0.05 + 0.001)


def test_a_cheap_plan_is_made_again_at_once() -> None:
    assert not planned(cost_s=0.0001).plan_stands(("7", 11, 0), now=100.001)


def test_a_change_of_the_pod_or_its_token_never_waits() -> None:
    worker = planned(cost_s=10.0)
    assert not worker.plan_stands(("8", 10, 0), now=100.0)
    assert not worker.plan_stands(("7", 10, 1), now=100.0)


def test_a_pod_never_planned_is_planned() -> None:
    assert not PodWorker(KEY, UID).plan_stands(PLANNED, now=0.0)
