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
from typing import cast

from edge.edged.kubelet import Kubelet
from edge.edged.podspec import ContainerPlan, PodPlan
from edge.edged.runtime import HostMount, Observed, PodmanRuntime
from edge.edged.volumes import Volumes
from tests.unit.test_pod_status import KEY, UID, FakePodman, FakeVolumes, pod

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

    def containers(self) -> list[Observed]:
        if self.worker_done is not None:
            self.release.set()
            self.worker_done()
        return []  # what podman held when it was listed: nothing of this pod yet

    def pods(self) -> dict[str, str]:
        return {}


class ListedVolumes(FakeVolumes):
    def known_uids(self) -> set[str]:
        return set()


def test_a_worker_busy_when_podman_was_listed_is_left_to_the_next_pass(tmp_path: Path) -> None:
    podman = ListedPodman()
    k = Kubelet("edge-1", cast(PodmanRuntime, podman), cast(Volumes, ListedVolumes(tmp_path)), lambda *_: None,
                host_ip="192.168.1.20", workers=2)
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
