"""Pod status, byte for byte: what EdgeD reports for each state of a pod and its containers.

Each case is pinned as the JSON text the status encodes to (key order included), so that a change to how
the status is built cannot change what the API server receives. The deletion and restart cases go through
the kubelet's own pass (a fake podman underneath), the others through edge/edged/status.py directly.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edge.edged.podspec import plan_pod
from edge.edged.podworker import PodWorker
from edge.edged.runtime import Observed
from edge.edged.status import ContainerView, container_status, deleted_status, failed_status, pod_status, terminated
from tests.support.kubelet_fakes import KEY, T0, UID, FakePodman, kubelet, observed, pod

START = "2026-01-01T00:00:00Z"
GOLDEN: dict[str, str] = json.loads((Path(__file__).parent / "pod_status_golden.json").read_text())
"""Each case's status as the JSON text the API server receives for it (pod_status_golden.json)."""


def text(status: dict[str, Any]) -> str:
    return json.dumps(status)


# -- the kubelet's pass on a fake podman ------------------------------------------------------------------------


def one_pass(restart_policy: str, seen: list[Observed], *, deleting: bool = False, now: float = T0 + 100,
             monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any] | None = None,
             podman: FakePodman | None = None) -> tuple[dict[str, Any], FakePodman]:
    """One pass of the kubelet over ``spec`` (``pod(restart_policy)`` if None) with ``seen`` in podman."""
    monkeypatch.setattr(time, "time", lambda: now)
    podman = podman or FakePodman(listed=seen)  # read back after a start: podman shows nothing new yet
    with tempfile.TemporaryDirectory() as root:
        k = kubelet(podman, Path(root))
        try:
            status = k.sync_pod(PodWorker(KEY, UID, started=T0), spec or pod(restart_policy, deleting=deleting),
                                seen, {"default_web": UID})
        finally:
            k._pool.shutdown()
    assert status is not None
    return status, podman


DELETING = {
    "Always": GOLDEN["deleting_always"],
    "OnFailure": GOLDEN["deleting_onfailure"],
    "Never": GOLDEN["deleting_never"],
}


@pytest.mark.parametrize("restart_policy", sorted(DELETING))
def test_a_pod_being_deleted(restart_policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its containers are stopped and reported terminated; a pod meant to run for ever (Always) has failed."""
    status, podman = one_pass(restart_policy, [observed(state="running")], deleting=True, monkeypatch=monkeypatch)
    assert podman.removed_pods == ["default_web"]
    assert text(status) == DELETING[restart_policy]


@pytest.mark.parametrize("ran", [True, False], ids=["ran", "never-planned"])
def test_a_pod_being_deleted_after_its_config_map(ran: bool, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    """``kubectl delete namespace`` deletes a pod's ConfigMap beside the pod, in no set order: the pod is still
    stopped (with the plan it ran with), not left waiting for the ConfigMap."""
    monkeypatch.setattr(time, "time", lambda: T0 + 100)
    podman = FakePodman()
    k = kubelet(podman, tmp_path)
    using = pod("Always")
    using["spec"]["volumes"] = [{"name": "settings", "configMap": {"name": "settings"}}]
    config = {"metadata": {"name": "settings", "namespace": "default", "uid": "cm"}, "data": {"k": "v"}}
    worker = PodWorker(KEY, UID, started=T0)
    try:
        if ran:
            monkeypatch.setattr(k, "_lookup", lambda key: config)
            k.sync_pod(worker, using, [observed(state="running")], {"default_web": UID})
        monkeypatch.setattr(k, "_lookup", lambda key: None)
        deleting = {**using, "metadata": {**using["metadata"], "resourceVersion": "4",
                                          "deletionTimestamp": "2026-01-01T00:05:00Z"}}
        status = k.sync_pod(worker, deleting, [observed(state="running")] if ran else [], {"default_web": UID})
    finally:
        k._pool.shutdown()
    assert status is not None
    assert podman.removed_pods == (["default_web"] if ran else [])
    assert text(status) == DELETING["Always"]


def test_a_restarted_container_reports_how_it_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [observed("app", exit_code=1), observed("side", state="running", started_at=T0 + 5)]
    status, podman = one_pass("Always", seen, monkeypatch=monkeypatch)
    assert podman.created == ["app-1"]
    assert text(status) == GOLDEN["restarted"]


def test_a_container_in_crash_loop_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = [observed("app", exit_code=2, attempt=3, finished_at=T0 + 95),
            observed("side", state="running", started_at=T0 + 5)]
    status, podman = one_pass("Always", seen, monkeypatch=monkeypatch)
    assert podman.created == []
    assert text(status) == GOLDEN["backoff"]


def test_an_exit_with_no_exit_time_ends_at_the_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """podman gave a finished container no exit time: its last state ends when the kubelet saw it."""
    seen = [observed("app", exit_code=0, finished_at=0), observed("side", state="running", started_at=T0 + 5)]
    status, _ = one_pass("Always", seen, now=T0 + 130, monkeypatch=monkeypatch)
    assert text(status) == GOLDEN["no_exit_time"]


# -- status.py directly ---------------------------------------------------------------------------------------


def view(name: str, seen: Observed | None, *, waiting: str | None = None, message: str = "", ready: bool = True,
         last: dict[str, Any] | None = None) -> ContainerView:
    return ContainerView(name, "localhost/busybox:1", seen, waiting, message, ready, last)


CONTAINERS = {
    "running": (view("app", observed(state="running")), GOLDEN["c_running"]),
    "completed": (view("app", observed(exit_code=0)), GOLDEN["c_completed"]),
    "error": (view("app", observed(exit_code=137)), GOLDEN["c_error"]),
    "exited without exit time": (view("app", observed(exit_code=1, finished_at=0)), GOLDEN["c_no_exit_time"]),
    "creating": (view("app", None), GOLDEN["c_creating"]),
    "waiting with message": (view("app", None, waiting="ErrImagePull", message="no such image"), GOLDEN["c_waiting"]),
    "created, not started": (view("app", observed(state="created", started_at=0, finished_at=0)), GOLDEN["c_created"]),
}


@pytest.mark.parametrize("case", sorted(CONTAINERS))
def test_container_status(case: str) -> None:
    container, expected = CONTAINERS[case]
    assert text(container_status(container)) == expected


PODS = {
    "running and ready": ("Always", [view("app", observed(state="running"))], "10.88.0.5", GOLDEN["p_running"]),
    "not ready": ("Always", [view("app", observed(state="running"), ready=False), view("side", None)], "",
                  GOLDEN["p_not_ready"]),
    "succeeded": ("OnFailure", [view("app", observed()), view("side", observed("side"))], "", GOLDEN["p_succeeded"]),
    "failed": ("Never", [view("app", observed(exit_code=3)), view("side", observed("side"))], "", GOLDEN["p_failed"]),
    "restarting": ("Always", [view("app", observed(exit_code=3, attempt=2))], "", GOLDEN["p_restarting"]),
    "pending": ("Never", [view("app", None)], "", GOLDEN["p_pending"]),
}


@pytest.mark.parametrize("case", sorted(PODS))
def test_pod_status(case: str) -> None:
    restart_policy, views, pod_ip, expected = PODS[case]
    status = pod_status(restart_policy, views, pod_ip=pod_ip, host_ip="192.168.1.20", start_time=START, since=START)
    assert text(status) == expected


def test_a_pod_that_cannot_run_here() -> None:
    assert text(failed_status("InvalidSpec", "spec.containers is empty", "192.168.1.20", START)) == GOLDEN["failed"]


# -- status.py is the one builder: the kubelet's cases, from status.py alone -----------------------------------


@pytest.mark.parametrize("restart_policy", sorted(DELETING))
def test_deleted_status(restart_policy: str) -> None:
    status = deleted_status(restart_policy, [("app", "localhost/busybox:1"), ("side", "localhost/busybox:1")],
                            host_ip="192.168.1.20", start_time=START)
    assert text(status) == DELETING[restart_policy]


def test_last_state_of_a_restarted_container() -> None:
    """The same text as the state of a terminated container, but for the end when podman gave none."""
    expected = json.loads(GOLDEN["no_exit_time"])["containerStatuses"][0]["lastState"]["terminated"]
    assert text(terminated(observed("app", exit_code=0, finished_at=0), T0 + 130)) == text(expected)
    in_state = json.loads(GOLDEN["c_no_exit_time"])["state"]["terminated"]
    assert text(terminated(observed("app", exit_code=1, finished_at=0), T0 + 10)) == text(in_state)



# -- init containers through the kubelet's pass -----------------------------------------------------------------


def pod_with_init(restart_policy: str) -> dict[str, Any]:
    spec = pod(restart_policy)
    spec["spec"]["initContainers"] = [{"name": "a", "image": "localhost/busybox:1"},
                                      {"name": "b", "image": "localhost/busybox:1"}]
    return spec


def seen_of(spec: dict[str, Any], container: str, **kwargs: Any) -> Observed:
    """An observed container carrying the hash the plan of ``spec`` gives ``container``."""
    plan = plan_pod(spec, "edge-1", lambda _: None)
    hashes = {c.name: c.spec_hash for c in [*plan.init_containers, *plan.containers]}
    attempt = kwargs.get("attempt", 0)
    return replace(observed("app", **kwargs), id=f"id-{container}-{attempt}", container=container,
                   name=f"default_web_{container}_{attempt}", spec_hash=hashes[container])


@pytest.mark.parametrize(("done", "made"), [
    ((), ["a-0"]),
    (("a",), ["b-0"]),
    (("a", "b"), ["app-0", "side-0"]),
])
def test_init_containers_are_made_one_at_a_time_then_the_app(done: tuple[str, ...], made: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spec = pod_with_init("Always")
    status, podman = one_pass("Always", [seen_of(spec, name) for name in done], spec=spec, monkeypatch=monkeypatch)
    assert podman.created == made
    assert status["phase"] == "Pending"  # nothing runs yet
    assert status["conditions"][0]["status"] == ("True" if len(done) == 2 else "False")
    assert [s["name"] for s in status["initContainerStatuses"]] == ["a", "b"]
    waiting = [s["state"].get("waiting", {}).get("reason") for s in status["containerStatuses"]]
    assert waiting == (["PodInitializing"] * 2 if len(done) < 2 else ["ContainerCreating"] * 2)


@pytest.mark.parametrize(("restart_policy", "made", "phase"), [
    ("Never", [], "Failed"), ("OnFailure", ["a-1"], "Pending"), ("Always", ["a-1"], "Pending")])
def test_a_failed_init_container_is_restarted_unless_the_policy_is_never(
        restart_policy: str, made: list[str], phase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = pod_with_init(restart_policy)
    status, podman = one_pass(restart_policy, [seen_of(spec, "a", exit_code=1)], spec=spec, monkeypatch=monkeypatch)
    assert podman.created == made
    assert status["phase"] == phase
    assert status["conditions"][0]["status"] == "False"


@pytest.mark.parametrize(("restart_policy", "app_exit", "made_again"), [
    ("Always", 0, True), ("OnFailure", 1, True), ("OnFailure", 0, False), ("Never", 1, False)])
def test_a_stopped_sandbox_is_made_again_with_its_init_containers_when_something_would_restart(
        restart_policy: str, app_exit: int, made_again: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a reboot every container has ended and the pod's infra container is down: kubelet makes a new
    sandbox, whose init containers run first; a pod that has finished is left as it ended."""
    spec = pod_with_init(restart_policy)
    seen = [seen_of(spec, "a"), seen_of(spec, "b"), seen_of(spec, "app", exit_code=app_exit),
            seen_of(spec, "side", exit_code=app_exit)]
    podman = FakePodman(sandbox_up=False)
    _, podman = one_pass(restart_policy, seen, spec=spec, monkeypatch=monkeypatch, podman=podman)
    if made_again:
        assert (podman.removed_pods, podman.made_pods, podman.created) == (["default_web"], ["default_web"], ["a-0"])
    else:
        assert (podman.removed_pods, podman.made_pods) == ([], [])
    up = FakePodman(sandbox_up=True)  # the same pod with its sandbox up: the app containers restart in it
    _, up = one_pass(restart_policy, seen, spec=spec, monkeypatch=monkeypatch, podman=up)
    assert up.made_pods == []


@pytest.mark.parametrize(("probe_grace", "stopped_with"), [(7, 7), (None, 30)])
def test_a_failed_liveness_probe_kills_with_its_own_grace_period_or_the_pods(
        probe_grace: int | None, stopped_with: int, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = pod("Always")
    probe: dict[str, Any] = {"exec": {"command": ["false"]}, "failureThreshold": 1}
    if probe_grace is not None:
        probe["terminationGracePeriodSeconds"] = probe_grace
    spec["spec"]["containers"][0]["livenessProbe"] = probe
    seen = [seen_of(spec, "app", state="running", finished_at=0), seen_of(spec, "side", state="running")]
    podman = FakePodman(exec_code=1)
    one_pass("Always", seen, spec=spec, monkeypatch=monkeypatch, podman=podman)
    assert podman.stopped == [("id-app-0", stopped_with)]
