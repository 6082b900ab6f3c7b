"""Crashes: every process of the system SIGKILLed in turn during a mixed stream, then convergence.

One round per process: the cloud broker, CloudHub, EdgeController, DeviceController
(restarted at once, as a container's restart policy or systemd would), and on a node
its broker, the bridge, EdgeHub, MetaManager, EdgeD, DeviceTwin and EventBus (found on
the node's host and restarted by ``edgehive edge``, which supervises them). With
mosquitto's own bridge (the default on a mosquitto node) the broker carries the link and
there is no bridge process: killing the broker kills the link with what its bridge held
in memory, which EdgeHub's outbox and CloudHub's per-node queues must make up for. Each round
runs API changes and device readings, kills the process in the middle, and then
waits until every node holds exactly the API's view, every pod runs and every Device
shows its last reading: nothing lost, nothing stale. The time from the kill to that
point is reported per process.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from functools import partial

import pytest

from tests.fixtures.processes import wait_until
from tests.support.fleet import EdgeSite, Fleet
from tests.support.workload import Workload

pytestmark = [pytest.mark.slow]

CLOUD = ("cloud-broker", "cloudhub", "edgecontroller", "devicecontroller")
COMPONENTS = {  # what names each of the node's Python processes on its host
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


def edge_markers(site: EdgeSite) -> dict[str, str]:
    """What names each process on the node's host, its broker first (by its kind: EdgeSite.broker_marker); the
    bridge only where it is a process of its own (``--bridge python``)."""
    return {"edge-broker": site.broker_marker,
            **{name: marker for name, marker in COMPONENTS.items() if name != "bridge" or site.bridge == "python"}}


@pytest.mark.timeout(1500)
def test_every_process_killed_in_turn(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2)
    work = Workload(fleet, configmaps=10, sleepers=1)
    work.setup()
    site = next(iter(fleet.sites.values()))
    edge = edge_markers(site)

    def kill(victim: str) -> None:
        if victim in CLOUD:
            fleet.cloud[victim].kill()
            fleet.start_cloud(victim, fleet.broker_argv() if victim == "cloud-broker"
                              else fleet.cloud_component_argv(victim))
            return
        marker = edge[victim]
        pid = site.pid_of(marker)
        assert pid is not None, f"no {victim} on {site.node}'s host"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: site.pid_of(marker) not in (None, pid), timeout=30,
                   what=f"edgehive edge restarting {victim}", alive=site.process)

    times = {victim: work.disrupt(partial(kill, victim), f"killing {victim}", STREAM_S, READINGS, CONVERGE_S)
             for victim in (*CLOUD, *edge)}
    print("\nkilled during a mixed stream; seconds to convergence from the kill, and from the stream's end:")
    for victim, (took, tail) in times.items():
        print(f"  {victim:<18} {took:5.1f} {tail:5.1f}")
    print(f"  ({work.operations} API changes, {work.readings * len(fleet.sites)} readings in all)")
