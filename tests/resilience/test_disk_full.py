"""Disk full on an edge node: its data directory (every store, the pods' volumes) on a small tmpfs, filled up.

While the disk is full the node must say so (the Node's DiskPressure condition), keep
its pods running, refuse new writes with a clear error (MetaManager and DeviceTwin
take nothing they cannot keep, and say why once in their logs), and lose nothing the
cloud sent: once space returns, it converges to the API server's view and the
devices' next readings reach their Devices.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.processes import wait_until
from tests.support.fleet import Fleet, podman_pods
from tests.support.workload import Workload

pytestmark = [pytest.mark.slow]

DATA_MB = 48
CONVERGE_S = 90.0


def fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses more (ENOSPC); returns it."""
    filler = directory / "filler"
    chunk = b"\0" * (1024 * 1024)
    # Unbuffered: a buffered file keeps what the full disk refused and tries it again on close, which raised
    # ENOSPC out of the ``with`` now and then.
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def disk_pressure(fleet: Fleet, node: str) -> dict[str, Any] | None:
    for condition in fleet.core.read_node(node).status.conditions or []:
        if condition.type == "DiskPressure":
            return {"status": condition.status, "message": condition.message}
    return None


@pytest.mark.timeout(600)
def test_disk_full_then_space_returns(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(1, data_tmpfs_mb=DATA_MB)
    work = Workload(fleet, configmaps=5, sleepers=2)
    work.setup()
    node, site = next(iter(fleet.sites.items()))
    assert (disk_pressure(fleet, node) or {}).get("status") == "False"
    rv_before = site.stored()[f"{fleet.namespace}/configmap/cm-0-0"][0]

    pods_before = [p.metadata.name for p in fleet.core.list_namespaced_pod(fleet.namespace).items]
    filler = fill(site.state / "data")
    full_at = time.monotonic()
    wait_until(lambda: (disk_pressure(fleet, node) or {}).get("status") == "True", timeout=60,
               what="the node reporting DiskPressure")
    message = str((disk_pressure(fleet, node) or {}).get("message"))
    assert "disk full" in message, message
    assert "free space there" in message, message

    # New writes: a ConfigMap change and a new pod from the cloud, readings from the devices.
    fleet.core.patch_namespaced_config_map("cm-0-0", fleet.namespace, {"data": {"VALUE": "while-full"}})
    work.new_pod(0, node)
    for sim in work.start_devices(20, 1.0):
        wait_until(lambda s=sim: s.returncode() is not None, timeout=60, what="readings sent",  # type: ignore[misc]
                   interval=0.5)
    logs = site.state / "logs"
    for component in ("metamanager", "devicetwin"):
        wait_until(lambda c=component: "disk full" in (logs / f"{c}.log").read_text(), timeout=30,  # type: ignore[misc]
                   what=f"{component} saying the disk is full")
    time.sleep(5)  # a window in which a write that got through would show: the scenario, not a synchronisation
    assert site.stored()[f"{fleet.namespace}/configmap/cm-0-0"][0] == rv_before, "a write was taken on a full disk"
    phases = {p.metadata.name: p.status.phase for p in fleet.core.list_namespaced_pod(fleet.namespace).items}
    in_podman = podman_pods(fleet.namespace)
    for name in pods_before:
        assert phases[name] == "Running", f"{name} is {phases[name]} on a full disk"
        assert f"{fleet.namespace}_{name}" in in_podman, f"{name} stopped on a full disk"
    assert site.process is not None
    assert site.process.returncode() is None

    filler.unlink()
    freed = time.monotonic()
    wait_until(lambda: (disk_pressure(fleet, node) or {}).get("status") == "False", timeout=60,
               what="DiskPressure cleared")
    for sim in work.start_devices(20, 1.0):
        wait_until(lambda s=sim: s.returncode() is not None, timeout=60, what="readings sent",  # type: ignore[misc]
                   interval=0.5)
    took = work.wait_converged(CONVERGE_S, "space returned")
    print(f"\ndisk full for {freed - full_at:.0f} s: DiskPressure reported, writes refused, pods kept running; "
          f"converged {time.monotonic() - freed:.1f} s after space returned ({took:.1f} s after the last readings)")
