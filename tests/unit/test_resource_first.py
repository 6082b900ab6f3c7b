"""The bridge's rule that stream frames wait while resource messages are held, bounded per frame."""

from __future__ import annotations

import threading

from broker.resourcefirst import ResourceTraffic


def test_a_frame_passes_at_once_when_no_resource_is_held() -> None:
    assert ResourceTraffic(max_wait_s=5.0).wait_quiet() is True


def test_a_frame_waits_until_the_last_held_resource_passed() -> None:
    traffic = ResourceTraffic(max_wait_s=30.0)
    traffic.taken()
    traffic.taken()
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(traffic.wait_quiet()))
    waiter.start()
    traffic.passed()
    waiter.join(timeout=0.2)
    assert waiter.is_alive(), "one of two resources passed: the frame still waits"
    traffic.passed()
    waiter.join(timeout=30)
    assert results == [True]
    assert traffic.held == 0


def test_the_wait_is_bounded_when_a_resource_is_never_acknowledged() -> None:
    traffic = ResourceTraffic(max_wait_s=0.05)
    traffic.taken()
    assert traffic.wait_quiet() is False  # ran out: the frame goes on, the resource still held
    assert traffic.held == 1


def test_more_passed_than_taken_never_goes_below_zero() -> None:
    traffic = ResourceTraffic()
    traffic.passed()
    traffic.taken()
    assert traffic.held == 1
