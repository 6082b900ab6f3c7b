"""EdgeD's first pass after a start: which pods podman calls running in a sandbox that is gone are made again.

The runtime's answer (PodmanRuntime.sandbox_lost, which asks the OCI runtime) is faked here; the real one is
exercised by tests/resilience/test_power_loss.py, whose cuts kill the pods' conmons with podman.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge.edged.runtime import Observed
from tests.support.kubelet_fakes import UID, FakePodman, kubelet, observed


@dataclass
class LostPodman(FakePodman):
    lost: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)
    silent: int = 0
    """Times podman does not answer (its service not up yet) before it does."""

    def sandbox_lost(self, podman_name: str) -> bool | None:
        self.asked.append(podman_name)
        if self.silent:
            self.silent -= 1
            return None
        return podman_name in self.lost


def by_uid(*seen: Observed) -> dict[str, list[Observed]]:
    return {UID: list(seen)}


PODS = {"default_web": UID}


def test_only_the_first_pass_asks_and_an_ended_pod_is_left_as_it_ended(tmp_path: Path) -> None:
    podman = LostPodman(lost={"default_web"})
    k = kubelet(podman, tmp_path)
    assert k._lost_sandboxes(PODS, by_uid(observed(state="running")), {UID: "Always"}) == {UID}
    assert k._lost_sandboxes(PODS, by_uid(observed(state="running")), {UID: "Always"}) == set()  # restored already
    assert podman.asked == ["default_web"]

    for policy, code in (("Never", 1), ("OnFailure", 0)):
        k = kubelet(podman, tmp_path)
        assert k._lost_sandboxes(PODS, by_uid(observed(state="exited", exit_code=code)), {UID: policy}) == set()
    assert podman.asked == ["default_web"]  # a pod whose containers all ended for good is not even asked about


def test_a_pod_whose_containers_all_ended_but_restart_is_asked_about(tmp_path: Path) -> None:
    # A cut whose SIGKILL the container's conmon recorded (exit 137) before dying: the container restarts
    # under Always (or OnFailure), and it needs its sandbox; left alone, every start failed on the dead one's.
    podman = LostPodman(lost={"default_web"})
    for policy in ("Always", "OnFailure"):
        killed = by_uid(observed(state="exited", exit_code=137))
        assert kubelet(podman, tmp_path)._lost_sandboxes(PODS, killed, {UID: policy}) == {UID}
    # The newest instance decides: an earlier failure (kept as the previous instance) restarts nothing now.
    done = by_uid(observed(state="exited", exit_code=1), observed(state="exited", exit_code=0, attempt=1))
    assert kubelet(podman, tmp_path)._lost_sandboxes(PODS, done, {UID: "OnFailure"}) == set()


def test_a_pod_made_but_never_started_and_a_live_one(tmp_path: Path) -> None:
    podman = LostPodman(lost={"default_web"})
    assert kubelet(podman, tmp_path)._lost_sandboxes(PODS, {}, {UID: "Always"}) == {UID}
    assert kubelet(podman, tmp_path)._lost_sandboxes(PODS, by_uid(observed(state="created")), {UID: "Always"}) \
        == {UID}
    podman.lost.clear()
    assert kubelet(podman, tmp_path)._lost_sandboxes(PODS, by_uid(observed(state="running")), {UID: "Always"}) \
        == set()


def test_a_pod_no_longer_wanted_is_not_asked_about(tmp_path: Path) -> None:
    podman = LostPodman(lost={"default_web"})
    assert kubelet(podman, tmp_path)._lost_sandboxes(PODS, by_uid(observed(state="running")), {}) == set()
    assert podman.asked == []  # the orphan sweep removes it whatever its state


def test_a_pod_podman_could_not_be_asked_about_is_asked_again_at_the_next_pass(tmp_path: Path) -> None:
    """Found by a CI run of test_power_loss: after a cut, EdgeD's first pass came before podman's service
    answered; the pods it could not ask about were taken for alive and stayed "running" without a process."""
    other = "default_db"
    pods = PODS | {other: "uid-db"}
    podman = LostPodman(lost={"default_web"}, silent=2)
    k = kubelet(podman, tmp_path)
    running = by_uid(observed(state="running")) | {"uid-db": [observed(state="running")]}
    policies = {UID: "Always", "uid-db": "Always"}
    assert k._lost_sandboxes(pods, running, policies) == set()  # podman silent for both
    assert k._lost_sandboxes(pods, running, policies) == {UID}  # answered now: web is lost, db is alive
    assert k._lost_sandboxes(pods, running, policies) == set()  # every pod answered for: not asked again
    assert podman.asked == ["default_web", other, "default_web", other]
