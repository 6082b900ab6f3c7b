"""EdgeController as active/standby on real parts: two processes elect a leader on a Lease in the real API
server; the standby does nothing until the leader is SIGKILLed and its Lease expires, then it leads and a pod
created after the kill still reaches the node."""

from __future__ import annotations

import time
import uuid
from functools import partial
from typing import Any

from tests.fixtures.processes import ManagedProcess, wait_until
from tests.integration.test_end_to_end import pod_manifest, running
from tests.support.cluster import Cluster, node_names

LEASE_S = 4


def says(process: ManagedProcess, text: str) -> bool:
    return text in process.log_path.read_text(errors="replace")


def test_the_standby_takes_over_when_the_leader_is_killed(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    cluster.cloud.pop("edgecontroller").stop()  # the lone EdgeController makes way for two candidates
    lease = f"edgecontroller-{uuid.uuid4().hex[:6]}"
    candidates = []
    for name in ("ec-a", "ec-b"):
        argv = [*cluster.cloud_argv("edgecontroller"), "--leader-elect", lease, "--leader-lease-s", str(LEASE_S),
                "--leader-identity", name]
        process = ManagedProcess(name, argv, cluster.workdir / f"{name}.log").start()
        cluster.cloud[name] = process
        candidates.append(process)
        if name == "ec-a":  # a first: it leads, b waits as a standby
            wait_until(partial(says, process, "ec-a: leading"), timeout=20, what="ec-a leading", alive=process)
    leader, standby = candidates
    wait_until(partial(says, standby, "ec-b: standby"), timeout=20, what="ec-b waiting", alive=standby)

    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_pod(ns, pod_manifest("before", node, "sleep 3600"))
    wait_until(partial(running, cluster, "before"), timeout=45, what="a pod Running under ec-a")
    assert not says(standby, "ec-b: leading")
    assert "started" not in standby.log_path.read_text(errors="replace")  # the standby ran nothing

    leader.kill()
    killed = time.monotonic()
    core.create_namespaced_pod(ns, pod_manifest("after", node, "sleep 3600"))
    wait_until(partial(says, standby, "ec-b: leading"), timeout=LEASE_S + 10, what="ec-b leading", alive=standby)
    taken = time.monotonic() - killed
    assert taken >= LEASE_S - 1.5, f"the standby led {taken:.1f} s after the kill, before the Lease expired"
    wait_until(partial(running, cluster, "after"), timeout=45, what="a pod created after the kill Running")


def test_devicecontroller_candidates_run_one_at_a_time(cluster_factory: Any) -> None:
    """The same election for DeviceController (its own Lease): one runs, the other starts only after the
    leader is killed and its Lease has expired."""
    cluster: Cluster = cluster_factory([])
    cluster.cloud.pop("devicecontroller").stop()
    lease = f"devicecontroller-{uuid.uuid4().hex[:6]}"
    first = ManagedProcess("dc-a", [*cluster.cloud_argv("devicecontroller"), "--leader-elect", lease,
                                    "--leader-lease-s", str(LEASE_S), "--leader-identity", "dc-a"],
                           cluster.workdir / "dc-a.log").start()
    cluster.cloud["dc-a"] = first
    wait_until(partial(says, first, "devicecontroller started"), timeout=20, what="dc-a running", alive=first)
    second = ManagedProcess("dc-b", [*cluster.cloud_argv("devicecontroller"), "--leader-elect", lease,
                                     "--leader-lease-s", str(LEASE_S), "--leader-identity", "dc-b"],
                            cluster.workdir / "dc-b.log").start()
    cluster.cloud["dc-b"] = second
    wait_until(partial(says, second, "dc-b: standby"), timeout=20, what="dc-b waiting", alive=second)
    assert not says(second, "devicecontroller started")
    first.kill()
    wait_until(partial(says, second, "devicecontroller started"), timeout=LEASE_S + 10, what="dc-b running",
               alive=second)
