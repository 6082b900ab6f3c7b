"""A podman and a volume manager answered from memory, and the pod they are asked about: for unit tests of the
kubelet's pass (tests/unit/test_pod_status.py, tests/unit/test_kubelet_pass.py), which the real ones would
make integration tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from edge.edged.kubelet import Kubelet
from edge.edged.nodeclaim import NodeTaken
from edge.edged.podspec import ContainerPlan, PodPlan, plan_pod
from edge.edged.runtime import HostMount, Observed, PodmanRuntime
from edge.edged.volumes import Volumes
from schemas.resource import ResourceKey

KEY = ResourceKey("default", "pod", "web")
UID = "u-1"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class FakePodman:
    """What the kubelet asks of podman in one pass, answered from memory."""

    removed_pods: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    sandbox_up: bool = True
    made_pods: list[str] = field(default_factory=list)
    stopped: list[tuple[str, int]] = field(default_factory=list)
    exec_code: int = 0
    removed: list[str] = field(default_factory=list)
    """The ids of the containers removed (not pods)."""
    listed: list[Observed] = field(default_factory=list)
    """What a list of one pod's containers answers (a worker reading back what it started)."""
    taken_by: str | None = None
    """Another EdgeD serving this node on this podman (its claim's holder): claim_node refuses."""

    def claim_node(self) -> None:
        if self.taken_by is not None:
            raise NodeTaken(f"node 'web-node' is already served by another EdgeD ({self.taken_by})")

    def containers(self, pod_uid: str | None = None) -> list[Observed]:
        return [o for o in self.listed if pod_uid in (None, o.pod_uid)]

    def pod_uid(self, podman_name: str) -> str | None:
        return UID if podman_name in self.made_pods else None

    def remove_pod(self, podman_name: str, grace_s: int) -> None:
        self.removed_pods.append(podman_name)

    def stop_container(self, container_id: str, grace_s: int) -> None:
        self.stopped.append((container_id, grace_s))

    def exec(self, container_id: str, command: list[str]) -> tuple[int, bytes]:
        return self.exec_code, b""

    def image_present(self, image: str) -> bool:
        return True

    def create_container(self, plan: PodPlan, container: ContainerPlan, attempt: int,
                         mounts: list[HostMount]) -> str:
        self.created.append(f"{container.name}-{attempt}")
        return f"id-{container.name}-{attempt}"

    def remove_container(self, container_id: str) -> None:
        self.removed.append(container_id)

    def start_pod(self, podman_name: str) -> None:
        pass

    def start_container(self, container_id: str) -> None:
        pass

    def pod_ip(self, podman_name: str) -> str:
        return "10.88.0.5"

    def sandbox_running(self, podman_name: str) -> bool:
        return self.sandbox_up

    def sandbox_lost(self, podman_name: str) -> bool | None:
        return not self.sandbox_up

    def create_pod(self, plan: PodPlan) -> None:
        self.made_pods.append(plan.podman_name)


@dataclass
class FakeVolumes:
    root: Path

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def prepare(self, plan: PodPlan) -> None:
        pass

    def mounts(self, plan: PodPlan, container: ContainerPlan) -> list[HostMount]:
        return []



def pod(restart_policy: str, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default", "uid": UID, "resourceVersion": "3"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    return {"metadata": meta, "spec": {"restartPolicy": restart_policy, "containers": [
        {"name": "app", "image": "localhost/busybox:1"}, {"name": "side", "image": "localhost/busybox:1"}]}}


def spec_hashes() -> dict[str, str]:
    """The hash the kubelet labels each container of ``pod()`` with: an observed container that carries it is
    the one the spec asks for (another would be replaced)."""
    return {c.name: c.spec_hash for c in plan_pod(pod("Always"), "edge-1", lambda _: None).containers}


def observed(container: str = "app", *, state: str = "exited", exit_code: int = 0, attempt: int = 0,
             started_at: int = T0 + 10, finished_at: int = T0 + 70) -> Observed:
    return Observed(id=f"id-{container}-{attempt}", name=f"default_web_{container}_{attempt}", pod_uid=UID,
                    container=container, attempt=attempt, spec_hash=spec_hashes()[container], state=state,
                    exit_code=exit_code, started_at=started_at, finished_at=finished_at, image_id="sha256:abc")


def kubelet(podman: FakePodman, root: Path) -> Kubelet:
    """A kubelet of one worker over the fake podman and volumes, reporting nowhere."""
    return Kubelet("edge-1", cast(PodmanRuntime, podman), cast(Volumes, FakeVolumes(root)), lambda *_: None,
                   host_ip="192.168.1.20", workers=1)
