"""``bench all``'s verdict on issue 19's goals: met only when every figure a goal reads is there and within it."""

from __future__ import annotations

import copy
from typing import Any

from edgehive.bench.goals import GOALS, verdicts


def meeting() -> dict[str, Any]:
    link = {"added_latency_ms": {"p99": 4.0}}
    return {
        "cloud": {"ratio": 0.85, "commit_latency_ms": {"p99": 120.0}},
        "cloud_mosquitto": {"ratio": 0.9, "commit_latency_ms": {"p99": 90.0}},
        "edge": {"commit_per_s": 2500.0}, "edge_mosquitto": {"commit_per_s": 4000.0},
        "twin": {"ratio": 0.95}, "twin_mosquitto": {"ratio": 1.0},
        "link": link, "link_2": copy.deepcopy(link), "link_3": copy.deepcopy(link),
        "footprint": {"edge_pss_mb": 69.0},
    }


def test_a_run_within_every_goal_meets_them_all() -> None:
    found = verdicts(meeting())
    assert list(found) == [goal.name for goal in GOALS]
    assert all(v["met"] is True for v in found.values()), found


def test_one_link_run_of_three_over_its_bound_fails_the_link_goal_alone() -> None:
    report = meeting()
    report["link_3"]["added_latency_ms"]["p99"] = 5.5
    found = verdicts(report)
    failed = [name for name, v in found.items() if v["met"] is not True]
    assert failed == ["link added latency p99, mosquitto, three runs (ms)"]
    assert found[failed[0]]["figures"]["link_3.added_latency_ms.p99"] == 5.5


def test_bounds_hold_both_ways_at_the_edge() -> None:
    report = meeting()
    report["cloud"]["ratio"] = 0.8  # at least 0.8: met
    report["footprint"]["edge_pss_mb"] = 70.0  # at most 70: met
    report["edge"]["commit_per_s"] = 999.9
    found = verdicts(report)
    assert found["cloud ratio, amqtt"]["met"] is True
    assert found["edge footprint, PSS of the edge processes (MB)"]["met"] is True
    assert found["edge commits/s, amqtt"]["met"] is False


def test_a_missing_or_failed_scenario_is_missing_never_met() -> None:
    report = meeting()
    del report["twin_mosquitto"]
    report["cloud"] = {"error": "the API server did not start"}
    report["footprint"]["edge_pss_mb"] = True  # not a number
    found = verdicts(report)
    assert found["twin ratio, mosquitto"]["met"] is None
    assert found["cloud ratio, amqtt"]["met"] is None
    assert found["edge footprint, PSS of the edge processes (MB)"]["met"] is None
