"""Crashes: every process of the system SIGKILLed in turn during a mixed stream, then convergence.

One round per process: the cloud broker, CloudHub, EdgeController, DeviceController
(restarted at once, as a container's restart policy or systemd would), and on a node
its broker, the bridge, EdgeHub, MetaManager, EdgeD, DeviceTwin and EventBus (found on
the node's host and restarted by ``edgehive edge``, which supervises them). Each round
runs API changes and device readings, kills the process in the middle, and then
waits until every node holds exactly the API's view, every pod runs and every Device
shows its last reading: nothing lost, nothing stale. The time from the kill to that
point is reported per process.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from tests.fixtures.processes import wait_until
from tests.resilience.fleet import Fleet
from tests.resilience.workload import Workload

pytestmark = [pytest.mark.slow]

CLOUD = ("cloud-broker", "cloudhub", "edgecontroller", "devicecontroller")
EDGE = {  # what names each process on a node's host
    "edge-broker": "-m broker --listen",
    "bridge": "-m broker.bridge",
    "edgehub": "-m edge.edgehub",
    "metamanager": "-m edge.metamanager",
    "edged": "-m edge.edged",
    "devicetwin": "-m edge.devicetwin",
    "eventbus": "-m edge.eventbus",
}
STREAM_S = 8.0
READINGS = 400  # per node and round
CONVERGE_S = 90.0


@pytest.mark.timeout(1500)
def test_every_process_killed_in_turn(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2)
    work = Workload(fleet, configmaps=10, sleepers=1)
    work.setup()
    site = next(iter(fleet.sites.values()))
    times: dict[str, tuple[float, float]] = {}
    for victim in (*CLOUD, *EDGE):
        sims = work.start_devices(READINGS, STREAM_S)
        stream = work.stream(STREAM_S)
        time.sleep(STREAM_S / 3)  # into the middle of the stream: the moment of the kill is the scenario
        killed_at = time.monotonic()
        if victim in CLOUD:
            process = fleet.cloud[victim]
            process.kill()
            fleet.start_cloud(victim, fleet.broker_argv() if victim == "cloud-broker"
                              else fleet.cloud_component_argv(victim))
        else:
            pid = site.pid_of(EDGE[victim])
            assert pid is not None, f"no {victim} on {site.node}'s host"
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda v=victim, p=pid: site.pid_of(EDGE[v]) not in (None, p), timeout=30,  # type: ignore[misc]
                       what=f"edgehive edge restarting {victim}", alive=site.process)
        stream.join(timeout=STREAM_S + 60)
        for sim in sims:
            wait_until(lambda s=sim: s.returncode() is not None, timeout=120,  # type: ignore[misc]
                       what=f"{sim.name} done", interval=0.5)
            assert sim.returncode() == 0, sim.log_tail()
        after_stream = work.wait_converged(CONVERGE_S, f"killing {victim}")
        times[victim] = (time.monotonic() - killed_at, after_stream)
    print("\nkilled during a mixed stream; seconds to convergence from the kill, and from the stream's end:")
    for victim, (took, tail) in times.items():
        print(f"  {victim:<18} {took:5.1f} {tail:5.1f}")
    print(f"  ({work.operations} API changes, {work.readings * len(fleet.sites)} readings in all)")
