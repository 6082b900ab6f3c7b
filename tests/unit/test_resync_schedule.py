"""When connected nodes are resynchronised periodically: spread over the period, once per period each."""

from __future__ import annotations

import pytest

from cloud.resyncschedule import ResyncSchedule, spread

NODES = [f"edge-{i}" for i in range(300)]


def test_nodes_are_spread_over_the_first_period_then_come_once_a_period() -> None:
    schedule = ResyncSchedule(100.0)
    assert schedule.due(0.0, NODES) == [n for n in sorted(NODES) if spread(n) == 0.0]
    seen: list[str] = []
    per_tenth = []
    for step in range(1, 11):
        due = schedule.due(step * 10.0, NODES)
        per_tenth.append(len(due))
        seen += due
    assert sorted(seen) == sorted(NODES)  # each exactly once in the first period
    assert max(per_tenth) < 60  # about 30 a tenth, not all at once
    assert schedule.due(105.0, NODES) == []
    assert sorted(schedule.due(210.0, NODES)) == sorted(NODES)


def test_a_session_resync_puts_the_periodic_one_a_period_or_more_away() -> None:
    schedule = ResyncSchedule(100.0)
    schedule.resynced("edge-1", 0.0)
    assert schedule.due(99.9, ["edge-1"]) == []
    assert schedule.due(200.0, ["edge-1"]) == ["edge-1"]


def test_a_disconnected_node_is_forgotten() -> None:
    schedule = ResyncSchedule(100.0)
    schedule.resynced("edge-1", 0.0)
    assert schedule.due(300.0, []) == []
    assert schedule.due(300.0, ["edge-1"]) == ([] if spread("edge-1") > 0 else ["edge-1"])  # placed anew


def test_the_spread_is_stable_and_in_range() -> None:
    assert spread("edge-1") == spread("edge-1")
    assert all(0.0 <= spread(n) < 1.0 for n in NODES)


def test_a_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="period_s"):
        ResyncSchedule(0)
