"""EdgeD keeps each container's previous instance, as the kubelet keeps a dead container: ``kubectl logs
--previous`` reads it (edge/stream/session.py), and the container's last state is read from it when EdgeD has
none of its own (it restarted since). Older instances go when a restart makes a newer one previous."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge.edged.podworker import PodWorker, previous_attempts, superseded
from edge.edged.runtime import Observed
from edge.restarts import ALWAYS, FAILURE, NEVER, restarts, restarts_on
from edge.stream.podmanapi import PodContainer
from edge.stream.session import pick
from tests.support.kubelet_fakes import KEY, T0, UID, FakePodman, kubelet, observed, pod


def one_pass(restart_policy: str, seen: list[Observed], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], FakePodman]:
    monkeypatch.setattr(time, "time", lambda: T0 + 100)
    podman = FakePodman(listed=seen)
    k = kubelet(podman, tmp_path)
    try:
        status = k.sync_pod(PodWorker(KEY, UID, started=T0), pod(restart_policy), seen, {"default_web": UID})
    finally:
        k._pool.shutdown()
    assert status is not None
    return status, podman


def app_status(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in status["containerStatuses"] if s["name"] == "app")
    return found


SIDE = observed("side", state="running", started_at=T0 + 5)


def test_a_restart_keeps_the_instance_that_ended_and_removes_the_older(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [observed("app", exit_code=1, attempt=a, finished_at=T0 + 20 + a) for a in range(3)] + [SIDE]
    _status, podman = one_pass("Always", seen, tmp_path, monkeypatch)
    assert podman.created == ["app-3"]
    assert podman.removed == ["id-app-0", "id-app-1"]  # attempt 2 stays: the new one's previous instance


def test_a_changed_container_is_replaced_and_kept_as_the_previous(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [replace(observed("app", state="running", attempt=1, finished_at=0), spec_hash="an older spec"),
            observed("app", exit_code=1, attempt=0), SIDE]
    _status, podman = one_pass("Always", seen, tmp_path, monkeypatch)
    assert podman.created == ["app-2"]
    assert [stopped for stopped, _grace in podman.stopped] == ["id-app-1"]
    assert podman.removed == ["id-app-0"]  # the replaced one stays, as the kubelet keeps a killed container


def test_in_back_off_nothing_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [observed("app", exit_code=1, attempt=2, finished_at=T0 + 95), observed("app", exit_code=1, attempt=1),
            SIDE]
    status, podman = one_pass("Always", seen, tmp_path, monkeypatch)
    assert (podman.created, podman.removed) == ([], [])
    assert app_status(status)["lastState"]["terminated"]["containerID"] == "podman://id-app-2"  # as the kubelet's


@pytest.mark.parametrize(("restart_policy", "newest"), [
    ("Always", observed("app", state="running", attempt=1, finished_at=0)),
    ("OnFailure", observed("app", exit_code=0, attempt=1)),  # done for good: its state, and the last one before
])
def test_after_a_restart_of_edged_the_last_state_is_the_kept_instance(
        restart_policy: str, newest: Observed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [newest, observed("app", exit_code=3, attempt=0, finished_at=T0 + 9), SIDE]
    status, podman = one_pass(restart_policy, seen, tmp_path, monkeypatch)
    assert (podman.created, podman.removed) == ([], [])
    last = app_status(status)["lastState"]["terminated"]
    assert (last["containerID"], last["exitCode"], last["reason"]) == ("podman://id-app-0", 3, "Error")
    assert app_status(status)["restartCount"] == 1
    assert json.dumps(app_status(status)["state"]).startswith('{"running"' if newest.running else '{"terminated"')


def test_the_previous_instance_is_the_newest_that_ran_before_the_newest() -> None:
    never_ran = observed("app", state="created", attempt=2, started_at=0, finished_at=0)
    seen = [observed("app", attempt=0), observed("app", attempt=1), never_ran,
            observed("app", state="running", attempt=3), observed("side", state="running")]
    assert {name: o.attempt for name, o in previous_attempts(seen).items()} == {"app": 1}
    assert [o.attempt for o in superseded(seen, "app", 1)] == [0]


@pytest.mark.parametrize(("policy", "init", "on", "after_failure", "after_success"), [
    ("Always", False, ALWAYS, True, True),
    ("OnFailure", False, FAILURE, True, False),
    ("Never", False, NEVER, False, False),
    ("Always", True, FAILURE, True, False),
    ("OnFailure", True, FAILURE, True, False),
    ("Never", True, NEVER, False, False),
])
def test_what_restarts_a_container(policy: str, init: bool, on: str, after_failure: bool,
                                   after_success: bool) -> None:
    assert restarts_on(policy, init) == on
    assert (restarts(on, 1), restarts(on, 0)) == (after_failure, after_success)


# -- which instance the node's stream end reads (edge/stream/session.py) ------------------------------------------


def instance(attempt: int, state: str, exit_code: int = 0, on: str = ALWAYS) -> PodContainer:
    return PodContainer(f"id-{attempt}", "app", attempt, state, exit_code, on)


@pytest.mark.parametrize(("instances", "current", "previous"), [
    ([instance(0, "running")], "id-0", None),
    ([instance(1, "running"), instance(0, "exited", 1)], "id-1", "id-0"),
    ([instance(1, "exited", 1), instance(0, "exited", 1)], "id-1", "id-1"),  # CrashLoopBackOff, as the kubelet
    ([instance(0, "exited", 1)], "id-0", "id-0"),
    ([instance(1, "exited", 0, FAILURE), instance(0, "exited", 1, FAILURE)], "id-1", "id-0"),  # done for good
    ([instance(0, "exited", 0, NEVER)], "id-0", None),
    ([instance(2, "created"), instance(1, "exited", 1)], "id-1", "id-1"),  # the new one not started yet
])
def test_the_instance_whose_log_is_shown(instances: list[PodContainer], current: str, previous: str | None) -> None:
    assert getattr(pick(instances, previous=False), "id", None) == current
    assert getattr(pick(instances, previous=True), "id", None) == previous
