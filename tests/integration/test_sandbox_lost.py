"""PodmanRuntime.sandbox_lost on real podman: a pod whose containers died with their conmons is found out.

A power cut kills a pod's containers and their conmons, but not all at the same instant. The
power-loss test caught a pod whose infra container's conmon outlived its container by a moment and
recorded its end (podman showed the infra container Exited (137)) while the app container's conmon
died first: podman called that one running for ever, EdgeD asked only about the infra container and
reported the dead pod Running. Here each case is made by hand with SIGKILLs in that order.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edge.edged.runtime import PodmanRuntime
from tests.fixtures.podman import BUSYBOX_IMAGE, Podman
from tests.fixtures.processes import wait_until


@pytest.fixture
def pod(podman: Podman) -> Iterator[str]:
    """A started pod with no network (an infra container and one sleeping container), removed afterwards."""
    name = f"lost-{time.monotonic_ns()}"
    with podman.client() as client:
        created = client.pods.create(name, netns={"nsmode": "none"})
        try:
            client.containers.create(BUSYBOX_IMAGE, command=["sleep", "3600"], pod=name, name=f"{name}-main")
            created.start()
            yield name
        finally:
            created.remove(force=True)


def state(podman: Podman, name: str) -> dict[str, Any]:
    with podman.client() as client:
        found: dict[str, Any] = client.containers.get(name).attrs["State"]
        return found


def infra_name(podman: Podman, pod: str) -> str:
    with podman.client() as client:
        return str(client.containers.get(client.pods.get(pod).attrs["InfraContainerID"]).name)


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def kill_unrecorded(podman: Podman, name: str) -> None:
    """The container's conmon first, then its process: podman never hears of the end."""
    found = state(podman, name)
    os.kill(found["ConmonPid"], signal.SIGKILL)
    wait_until(lambda: gone(found["ConmonPid"]), timeout=10, what=f"{name}'s conmon gone")
    os.kill(found["Pid"], signal.SIGKILL)
    wait_until(lambda: gone(found["Pid"]), timeout=10, what=f"{name}'s process gone")


def test_a_live_pod_is_not_lost(podman: Podman, pod: str) -> None:
    assert not PodmanRuntime(podman.base_url, "n").sandbox_lost(pod)
    assert state(podman, f"{pod}-main")["Status"] == "running"  # SIGCONT changed nothing


def test_a_dead_infra_container_that_podman_calls_running(podman: Podman, pod: str) -> None:
    kill_unrecorded(podman, infra_name(podman, pod))
    assert PodmanRuntime(podman.base_url, "n").sandbox_lost(pod)


def test_a_dead_app_container_beside_an_infra_container_whose_end_was_recorded(podman: Podman, pod: str) -> None:
    main = f"{pod}-main"
    kill_unrecorded(podman, main)
    infra = infra_name(podman, pod)
    os.kill(state(podman, infra)["Pid"], signal.SIGKILL)  # its conmon lives: the end is recorded
    wait_until(lambda: state(podman, infra)["Status"] == "exited", timeout=30, what="the infra container exited")
    assert state(podman, main)["Status"] == "running"  # what podman says for ever
    assert PodmanRuntime(podman.base_url, "n").sandbox_lost(pod)
