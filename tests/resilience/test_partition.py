"""A partition: every node's link down for five minutes while the cluster changes and devices keep talking.

Three nodes on hosts of their own. With every veth down, the cluster creates, updates
and deletes 500 objects that belong to the nodes (ConfigMaps their pods use, pods
themselves, device desired values) and the nodes' devices publish 10,000 readings.
Then the links come back, and within 60 s every node must hold exactly the API
server's view (MetaManager's store, podman's pods, every pod Running) and every
Device's status must show its last reading and its state.

``EDGEHIVE_PARTITION_S`` shortens or lengthens the cut (default 300 s);
``EDGEHIVE_SOAK=1`` makes it an hour with ten times the readings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.support.fleet import Fleet
from tests.support.workload import Workload

pytestmark = [pytest.mark.slow]

SOAK = os.environ.get("EDGEHIVE_SOAK") == "1"
CUT_S = float(os.environ.get("EDGEHIVE_PARTITION_S") or (3600 if SOAK else 300))
READINGS = 100_000 if SOAK else 10_000
NODES = 3
CONFIGMAPS = 100  # per node, created during the cut; 40 updated, 20 deleted
CONVERGE_S = 60.0


@pytest.mark.timeout(int(CUT_S) + 900)
def test_partition_then_converge(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(NODES)
    work = Workload(fleet, configmaps=CONFIGMAPS, sleepers=3)
    work.setup(create_configmaps=False)  # the holder pods refer to ConfigMaps the cut will create

    fleet.partition(True)
    cut_at = time.monotonic()
    sims = work.start_devices(READINGS // NODES, CUT_S * 0.8)
    work.operations = 0
    change_everything(work)
    assert work.operations >= 500, work.operations
    for sim in sims:
        wait_until(lambda s=sim: s.returncode() is not None, timeout=CUT_S + 120,  # type: ignore[misc]
                   what=f"{sim.name} done", interval=1.0)
        assert sim.returncode() == 0, sim.log_tail()
    remaining = CUT_S - (time.monotonic() - cut_at)
    if remaining > 0:
        time.sleep(remaining)  # the partition's length is the scenario, not a wait for anything
    assert all(site.process is not None and site.process.returncode() is None for site in fleet.sites.values())

    fleet.partition(False)
    took = work.wait_converged(CONVERGE_S + 120, "the links came back")
    print(f"\npartition of {CUT_S:.0f} s, {work.operations} API changes, {READINGS} readings: converged "
          f"{took:.1f} s after the links came back")
    assert took <= CONVERGE_S, f"converged after {took:.1f} s (goal {CONVERGE_S:.0f} s)"


def change_everything(work: Workload) -> None:
    """500 changes to what the nodes hold: ConfigMaps created, updated and deleted, pods, desired values."""
    ns, core = work.fleet.namespace, work.fleet.core
    for i in range(len(work.nodes)):
        for name in work.cm_names(i):
            core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name),
                                                                  data={"VALUE": "1"}))
            work.operations += 1
    for i in range(len(work.nodes)):
        for name in work.cm_names(i)[:40]:
            core.patch_namespaced_config_map(name, ns, {"data": {"VALUE": "2"}})
            work.operations += 1
        for name in work.cm_names(i)[-20:]:
            core.delete_namespaced_config_map(name, ns)
            work.operations += 1
    for i, node in enumerate(work.nodes):
        for _ in range(4):
            work.new_pod(i, node)
        for _ in range(2):
            work.delete_oldest_pod(i)
        work.set_desired(node, "21")
