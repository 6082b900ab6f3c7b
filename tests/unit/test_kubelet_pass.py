"""One sync pass hands a pod to its worker only with a listing of podman taken while that worker was idle.

A worker still creating a container when podman is listed, and done by the time the pass looks at it, would
otherwise get a listing without its new container and create that container again under the next attempt
number: a second container for one spec container, and a restart count of 1 on a pod's first start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest

from edge.edged.kubelet import Kubelet, StatusSink
from edge.edged.nodeclaim import NodeTaken
from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.podworker import PodWorker
from edge.edged.runtime import HostMount, Observed, PodmanRuntime
from edge.edged.volumes import Volumes
from schemas.resource import ResourceKey
from tests.support.kubelet_fakes import KEY, UID, FakePodman, FakeVolumes, observed, pod

DEADLINE_S = 10.0


@dataclass
class ListedPodman(FakePodman):
    """Creates block until released; listing podman can release them, as a worker may finish meanwhile."""

    release: threading.Event = field(default_factory=threading.Event)
    creating: threading.Event = field(default_factory=threading.Event)
    worker_done: Callable[[], object] | None = None  # set: listing lets the busy worker finish, and waits

    def create_container(self, plan: PodPlan, container: ContainerPlan, attempt: int,
                         mounts: list[HostMount]) -> str:
        self.creating.set()
        assert self.release.wait(DEADLINE_S), "the create was never released"
        return super().create_container(plan, container, attempt, mounts)

    def containers(self, pod_uid: str | None = None) -> list[Observed]:
        if pod_uid is not None:  # the worker reading back what it started
            return []
        if self.worker_done is not None:
            self.release.set()
            self.worker_done()
        return []  # what podman held when it was listed: nothing of this pod yet

    def pods(self) -> dict[str, str]:
        return {}


class ListedVolumes(FakeVolumes):
    def known_uids(self) -> set[str]:
        return set()


def kubelet(podman: FakePodman, root: Path, report: StatusSink = lambda *_: None) -> Kubelet:
    return Kubelet("edge-1", cast(PodmanRuntime, podman), cast(Volumes, ListedVolumes(root)), report,
                   host_ip="192.168.1.20", workers=2)


def test_a_worker_busy_when_podman_was_listed_is_left_to_the_next_pass(tmp_path: Path) -> None:
    podman = ListedPodman()
    k = kubelet(podman, tmp_path)
    try:
        k.set_pod(KEY, pod("Always"))
        k.sync_once()
        assert podman.creating.wait(DEADLINE_S)
        worker = k._workers[UID]
        first = worker.busy
        assert first is not None
        podman.worker_done = partial(first.result, DEADLINE_S)  # it finishes while the next pass lists podman
        k.sync_once()
        assert worker.busy is first, "the pass handed the pod a listing taken while its worker was busy"
    finally:
        podman.release.set()
        k._pool.shutdown(wait=True)
    assert podman.created == ["app-0", "side-0"]


class StartedPodman(FakePodman):
    """Lists, after the worker's start, the pod's containers running."""

    def __init__(self) -> None:
        super().__init__()
        self.listed_for: list[str | None] = []

    def containers(self, pod_uid: str | None = None) -> list[Observed]:
        self.listed_for.append(pod_uid)
        return [observed(name, state="running", finished_at=0) for name in ("app", "side")]


def test_a_pod_is_reported_running_by_the_pass_that_started_it(tmp_path: Path) -> None:
    """The worker that starts a pod's containers reads them back (that pod's alone) and reports Running at once:
    the pass after it may be far behind other pods' creates in the pool."""
    podman = StartedPodman()
    reports: list[dict[str, Any]] = []
    k = kubelet(podman, tmp_path, lambda _key, _meta, status: reports.append(status))
    try:
        k._sync_pod_safely(PodWorker(KEY, UID), pod("Always"), [], {})
    finally:
        k._pool.shutdown(wait=True)
    assert podman.created == ["app-0", "side-0"]
    assert podman.listed_for == [UID]
    assert [r["phase"] for r in reports] == ["Running"]
    assert all("running" in s["state"] for s in reports[0]["containerStatuses"])


class BusyPodman(FakePodman):
    """Its list of the whole node answers only once a container has been created, as podman's waits on the
    containers it is busy with."""

    def __init__(self) -> None:
        super().__init__()
        self.made = threading.Event()

    def create_container(self, plan: PodPlan, container: ContainerPlan, attempt: int,
                         mounts: list[HostMount]) -> str:
        self.made.set()
        return super().create_container(plan, container, attempt, mounts)

    def containers(self, pod_uid: str | None = None) -> list[Observed]:
        if pod_uid is None:
            assert self.made.wait(DEADLINE_S), "the new pod waited for the list of the whole node"
        return [observed(name.split("-")[0], state="running", finished_at=0) for name in self.created]

    def pods(self) -> dict[str, str]:
        return dict.fromkeys(self.made_pods, UID)


def test_a_new_pod_starts_without_waiting_for_the_list_of_the_node(tmp_path: Path) -> None:
    podman = BusyPodman()
    k = kubelet(podman, tmp_path)
    try:
        k.set_pod(KEY, pod("Always"))
        k.sync_once()
    finally:
        k._pool.shutdown(wait=True)
    assert podman.made_pods == ["default_web"]
    assert podman.created == ["app-0", "side-0"]


def test_a_pass_refused_the_node_touches_nothing_of_podmans(tmp_path: Path) -> None:
    """Another EdgeD serves this node on this podman (edge/edged/nodeclaim.py): its pods are not this one's to
    remove, nor is this one's pod to be made beside them."""
    podman = BusyPodman()
    podman.taken_by = "pid 4242"
    podman.made_pods.append("default_other")  # the other EdgeD's pod, an orphan to this one
    k = kubelet(podman, tmp_path)
    try:
        k.set_pod(KEY, pod("Always"))
        with pytest.raises(NodeTaken, match="pid 4242"):
            k.sync_once()
    finally:
        k._pool.shutdown(wait=True)
    assert podman.made_pods == ["default_other"]
    assert podman.created == []
    assert podman.removed_pods == []


def _with_config(name: str) -> dict[str, Any]:
    """``pod()`` with a ConfigMap volume ``name``."""
    spec = pod("Always")
    spec["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": name}}]
    return spec


def test_a_pods_signature_changes_with_what_it_uses_and_nothing_else(tmp_path: Path) -> None:
    k = kubelet(FakePodman(), tmp_path)
    used, other = ResourceKey("default", "configmap", "used"), ResourceKey("default", "configmap", "other")
    k.set_pod(KEY, _with_config("used"))
    worker = PodWorker(KEY, UID)
    first = k._signature(worker, _with_config("used"))
    k.set_config(other, {"data": {"a": "1"}})
    assert k._signature(worker, _with_config("used")) == first  # not its ConfigMap: its plan stands
    k.set_config(used, {"data": {"a": "1"}})
    second = k._signature(worker, _with_config("used"))
    assert second != first
    k.set_config(used, None)  # deleted
    assert k._signature(worker, _with_config("used")) not in (first, second)
    before_relist = k._signature(worker, _with_config("used"))
    k.replace_all({KEY: _with_config("used")}, {used: {"data": {}}})  # a relist may change anything
    assert k._signature(worker, _with_config("used")) != before_relist
