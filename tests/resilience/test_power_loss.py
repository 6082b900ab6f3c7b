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
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.fixtures.processes import wait_until
from tests.support.fleet import EdgeSite, Fleet
from tests.support.workload import Workload

pytestmark = [pytest.mark.slow]

CUTS = int(os.environ.get("EDGEHIVE_POWER_CUTS") or 20)
STREAM_S = 3.0
CONVERGE_S = 90.0
STORES = ("metamanager.db", "devicetwin.db", "outbox.db")


def container_pids(namespace: str) -> list[int]:
    """The processes of the namespace's pods (infra containers too) and their conmon monitors."""
    rows = subprocess.run(["podman", "ps", "--format", "{{.ID}} {{.PodName}}"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.splitlines()
    ids = [row.split()[0] for row in rows if len(row.split()) == 2 and row.split()[1].startswith(f"{namespace}_")]
    if not ids:
        return []
    states = json.loads(subprocess.run(["podman", "inspect", *ids], capture_output=True, text=True, check=False,
                                       timeout=60).stdout or "[]")
    return [pid for state in states for pid in (state["State"].get("Pid"), state["State"].get("ConmonPid")) if pid]


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


@pytest.mark.timeout(CUTS * 90 + 300)
def test_power_loss_twenty_times(fleet_factory: Callable[..., Fleet]) -> None:
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
        wait_until(partial(site.healthy_since, booted_at), timeout=60, what=f"{site.node} up again after cut {cut + 1}",
                   alive=site.process)
        # Readings cut off mid-flight may or may not have been taken: the devices' next ones decide the last value.
        for sim in work.start_devices(10, 0.5):
            wait_until(lambda s=sim: s.returncode() is not None, timeout=90,  # type: ignore[misc]
                       what=f"{sim.name} done after the restart", interval=0.5)
            assert sim.returncode() == 0, sim.log_tail()
        work.wait_converged(CONVERGE_S, f"power cut {cut + 1} ({killed} processes killed)")
        recoveries.append(time.monotonic() - started)
    recoveries.sort()
    print(f"\n{CUTS} power cuts: every store passed integrity_check; boot to convergence "
          f"median {recoveries[len(recoveries) // 2]:.1f} s, worst {recoveries[-1]:.1f} s")
