"""The large-fleet compose stack for real: docker-compose.yml with compose.ha.yml, every component in its container.

One test, since the stack takes a while to come up: 3 NATS members, 3 CloudHub replicas and 2 candidates of
each controller come up healthy (standbys included), and edge-1's Node is made for the replicas to serve it;
a pod reaches the edge node; then the NATS member the
node's bridge is on and the CloudHub replica that owns the node are both killed (``podman kill``, which the
restart policy leaves down, so the stack must do without them) and a new pod still reaches the node: the bridge
moved to another member, and another replica took the node once the dead one's Lease ran out.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from cloud.replicas.ownership import owner
from edgehive.compose import HA, ComposeStack, podman
from schemas.kubeobj import EDGE_ROLE_LABEL
from tests.containers.pods import NODE, run_pod
from tests.fixtures.processes import wait_until

pytestmark = pytest.mark.slow

MEMBERS = ("cloud-broker", "cloud-broker-2", "cloud-broker-3")
REPLICAS = {"cloudhub-1": "cloudhub", "cloudhub-2": "cloudhub-2", "cloudhub-3": "cloudhub-3"}
"""Replica identity (--replica-id) -> its compose service."""
PODS = ("ha-before", "ha-after")
BRIDGE_CONNECTED = re.compile(rf"bridge-{NODE}-cloud: connected to mqtt://{NODE}@([\w.-]+):1883")
LOG_LINES = 2000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    stack = ComposeStack(f"ehha{uuid.uuid4().hex[:6]}", tmp_path_factory.mktemp("compose-ha"), overrides=(HA,))
    try:
        healthy_s = stack.up_healthy(timeout=180)
        print(f"\nHA stack up and healthy in {healthy_s:.1f} s")
        yield stack
    finally:
        if stack.containers():
            stack.down()
        for name in PODS:  # EdgeD's pods are the host's podman pods: a failed test must not leave them running
            podman("pod", "rm", "-f", "-t", "0", f"default_{name}", check=False)


def bridge_members(stack: ComposeStack) -> list[str]:
    """The cloud broker members the bridge connected to, in order."""
    return BRIDGE_CONNECTED.findall(stack.logs("edge-1-bridge", tail=LOG_LINES))


def gains(stack: ComposeStack, identity: str) -> int:
    """How many times replica ``identity`` logged that it gained the node (it serves only that one)."""
    return stack.logs(REPLICAS[identity], tail=LOG_LINES).count(f"replica {identity}: 1 nodes now (gained 1")


def running(stack: ComposeStack, service: str) -> bool:
    return podman("inspect", stack.container(service), "--format", "{{.State.Running}}").stdout.strip() == "true"


@pytest.mark.timeout(600)  # the stack's start and stop count too: about 70 s and 30 s here
def test_ha_stack_survives_a_broker_member_and_a_cloudhub_replica(stack: ComposeStack) -> None:
    timings: dict[str, float] = {}
    kube = k8s_config.new_client_from_config(str(stack.copy_out(
        "apiserver", "/etc/edgehive/kube/kubeconfig.host", stack.work_dir / "kubeconfig")))
    core = k8s.CoreV1Api(kube)
    # Replicas serve the nodes that have a Node: the stack's edge-1-node made it before the first registration.
    assert EDGE_ROLE_LABEL in core.read_node(NODE).metadata.labels
    t0 = time.monotonic()
    wait_until(lambda: any(c.type == "Ready" and c.status == "True"
                           for c in core.read_node(NODE).status.conditions or []), timeout=60, what=f"{NODE} Ready")
    timings["node_ready_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    run_pod(kube, PODS[0])
    timings["first_pod_running_s"] = time.monotonic() - t0

    member = bridge_members(stack)[-1]
    assert member in MEMBERS
    serving = owner(NODE, REPLICAS)
    assert serving is not None
    assert gains(stack, serving) >= 1, f"{serving} should serve {NODE}"
    survivors = {identity for identity in REPLICAS if identity != serving}
    heir = owner(NODE, survivors)
    assert heir is not None
    heir_gains, connections = gains(stack, heir), len(bridge_members(stack))

    # podman kill is a stop by the user: the restart policy does not bring them back during the test.
    t0 = time.monotonic()
    podman("kill", "--signal", "KILL", stack.container(member))
    podman("kill", "--signal", "KILL", stack.container(REPLICAS[serving]))
    wait_until(lambda: len(bridge_members(stack)) > connections, timeout=30,
               what=f"the bridge connected again after {member} died")
    timings["bridge_on_another_member_s"] = time.monotonic() - t0
    assert bridge_members(stack)[-1] != member
    wait_until(lambda: gains(stack, heir) > heir_gains, timeout=30, what=f"{heir} took {NODE} from {serving}")
    timings["node_taken_by_another_replica_s"] = time.monotonic() - t0
    run_pod(kube, PODS[1])
    timings["pod_running_after_kills_s"] = time.monotonic() - t0
    assert not running(stack, member)
    assert not running(stack, REPLICAS[serving])
    print("HA timings: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))

    for name in PODS:
        core.delete_namespaced_pod(name, "default")
    wait_until(lambda: not core.list_namespaced_pod("default").items, timeout=60, what="the pods deleted")
    stack.down()
    assert stack.leftovers() == []
