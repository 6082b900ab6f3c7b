"""Power loss: every process of an edge node and every container of its pods SIGKILLed at once, 20 times.

Each cut comes at a different moment of a mixed stream (ConfigMap updates, pods coming
and going, device readings), so MetaManager, DeviceTwin and EdgeHub are in the middle
of SQLite writes. After each cut, before anything restarts, every store must open and
pass ``PRAGMA integrity_check``; then ``edgehive edge`` starts again as it would at
boot, the devices send a few more readings, and the node must converge: its store
equal to the API server's view, its pods running again, every Device showing its
last reading.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.processes import wait_until
from tests.support.fleet import EdgeSite, Fleet
from tests.support.podnetns import release_namespaces_cut_short
from tests.support.workload import Workload

pytestmark = [pytest.mark.slow]

CUTS = int(os.environ.get("EDGEHIVE_POWER_CUTS") or 20)
STREAM_S = 3.0
CONVERGE_S = 180.0
"""90 s, and the time the node's supervisor takes to restart a podman service that deadlocked (edgehive/
podmanprobe.py), up to about 75 s: podman 4.3 can, once in many restarts after a cut."""
STORES = ("metamanager.db", "devicetwin.db", "outbox.db")


def running_containers(namespace: str) -> list[dict[str, Any]]:
    """podman's inspection of every container it calls running in the namespace's pods (infra containers too).
    (``--pod``: without it podman leaves PodName empty, and the cut used to kill no container at all.)"""
    rows = subprocess.run(["podman", "ps", "--pod", "--format", "{{.ID}} {{.PodName}}"], capture_output=True,
                          text=True, check=True, timeout=60).stdout.splitlines()
    ids = [row.split()[0] for row in rows if len(row.split()) == 2 and row.split()[1].startswith(f"{namespace}_")]
    if not ids:
        return []
    found: list[dict[str, Any]] = json.loads(subprocess.run(
        ["podman", "inspect", *ids], capture_output=True, text=True, check=False, timeout=60).stdout or "[]")
    return found


def container_pids(namespace: str) -> list[int]:
    """The processes of the namespace's pods (infra containers too) and their conmon monitors."""
    return [pid for item in running_containers(namespace)
            for pid in (item["State"].get("Pid"), item["State"].get("ConmonPid")) if pid]


def dead_but_running(namespace: str) -> list[str]:
    """The containers podman calls running whose process is gone (podman learns of an end from conmon, which
    the cut killed too), by name: EdgeD must make such pods again, not report them Running."""
    return [f"{item.get('Name')} (pod {str(item.get('Pod'))[:12]})" for item in running_containers(namespace)
            if (pid := item["State"].get("Pid")) and not Path(f"/proc/{pid}").exists()]


def podman_evidence(site: EdgeSite, dead: list[str]) -> str:
    """podman's view of the pods of ``dead`` and EdgeD's log lines about them: what a failure report needs, since
    the logs live in a temporary directory that will be gone."""
    pods = dict(line.split(maxsplit=1) for line in subprocess.run(
        ["podman", "pod", "ps", "--format", "{{.ID}} {{.Name}}"], capture_output=True, text=True, check=False,
        timeout=60).stdout.splitlines() if " " in line)
    names = {pods[pod_id].split("_", 1)[-1] for entry in dead
             if (pod_id := entry.rsplit("(pod ", 1)[-1].rstrip(")")) in pods}
    lines = [f"{path.name}: {line}" for path in sorted((site.state / "logs").glob("*.log"))
             for line in path.read_text(errors="replace").splitlines() if any(n in line for n in names)]
    table = subprocess.run(["podman", "ps", "-a", "--pod", "--format", "{{.Names}} {{.Status}} {{.PodName}}"],
                           capture_output=True, text=True, check=False, timeout=60).stdout
    return "\n".join(lines[-40:]) + "\npodman ps -a --pod:\n" + table


@pytest.fixture
def cuts() -> Iterator[list[tuple[float, float | None]]]:
    """When each power cut struck and when the node had recovered from it (time.time(); None: not yet);
    afterwards, the namespaces podman made then and never recorded are removed (tests/support/podnetns.py)."""
    windows: list[tuple[float, float | None]] = []
    yield windows
    lost = release_namespaces_cut_short(windows)
    if lost:
        print(f"\nnetwork namespaces of pods a cut stopped half-way, removed: {', '.join(lost)}")


def power_cut(site: EdgeSite, namespace: str) -> int:
    """SIGKILL everything on the node's host and every container of its pods.

    Listing and killing are not one atomic step, so a process started in between (a
    child being restarted, a conmon being spawned) is killed on the next pass, until
    the host is empty, which is what the power going out leaves.
    """
    killed: set[int] = set()

    def kill(victims: set[int]) -> bool:
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.update(victims)
        return not victims

    kill(set(site.pids()) | set(container_pids(namespace)))
    wait_until(lambda: kill(set(site.pids())), timeout=20, interval=0.05,
               what=f"every process on {site.node}'s host gone after SIGKILL")
    return len(killed)


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def up_again(site: EdgeSite, booted_at: float, cut: int) -> None:
    """Wait for every child of the node healthy again; failing, show the log of each child that is not."""
    try:
        wait_until(partial(site.healthy_since, booted_at), timeout=60, what=f"{site.node} up again after cut {cut}",
                   alive=site.process)
    except pytest.fail.Exception as exc:
        pytest.fail(f"{exc}\nthe children not healthy, with their logs:\n{site.unhealthy_evidence()}", pytrace=False)


@pytest.mark.timeout(CUTS * 90 + 300)
def test_power_loss_twenty_times(fleet_factory: Callable[..., Fleet],
                                 cuts: list[tuple[float, float | None]]) -> None:
    fleet = fleet_factory(1)
    work = Workload(fleet, configmaps=10, sleepers=2)
    work.setup()
    site = next(iter(fleet.sites.values()))
    rng = random.Random(20261127)
    recoveries = []
    for cut in range(CUTS):
        sims = work.start_devices(600, STREAM_S)  # on the node's host: the cut takes them too
        stop = threading.Event()
        stream = work.stream(STREAM_S, stop)
        time.sleep(rng.uniform(0.3, STREAM_S - 0.5))  # a different moment of the writes each time
        cuts.append((time.time(), None))
        killed = power_cut(site, fleet.namespace)
        stop.set()
        stream.join(timeout=30)
        for sim in sims:
            sim.kill()
        data = site.state / "data"
        for store in STORES:
            assert (data / store).exists(), f"cut {cut + 1}: {store} is missing"
            assert integrity(data / store) == "ok", f"cut {cut + 1}: {store} fails its integrity check"
        started, booted_at = time.monotonic(), time.time()
        site.start()
        up_again(site, booted_at, cut + 1)
        # Readings cut off mid-flight may or may not have been taken: the devices' next ones decide the last value.
        for sim in work.start_devices(10, 0.5):
            wait_until(lambda s=sim: s.returncode() is not None, timeout=90,  # type: ignore[misc]
                       what=f"{sim.name} done after the restart", interval=0.5)
            assert sim.returncode() == 0, sim.log_tail()
        work.wait_converged(CONVERGE_S, f"power cut {cut + 1} ({killed} processes killed)")
        deadline = time.monotonic() + CONVERGE_S
        while (dead := dead_but_running(fleet.namespace)) and time.monotonic() < deadline:
            time.sleep(0.5)  # polling interval of the condition
        assert not dead, (f"after cut {cut + 1}, podman still calls running, {CONVERGE_S:.0f} s on, these "
                          f"containers without a process: {', '.join(dead)}\n" + podman_evidence(site, dead))
        cuts[-1] = (cuts[-1][0], time.time())
        recoveries.append(time.monotonic() - started)
    recoveries.sort()
    print(f"\n{CUTS} power cuts: every store passed integrity_check; boot to convergence "
          f"median {recoveries[len(recoveries) // 2]:.1f} s, worst {recoveries[-1]:.1f} s")
