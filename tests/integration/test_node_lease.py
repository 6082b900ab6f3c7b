"""The node as the control plane sees it, on real parts: its Lease, its status, and NodeReady after a cut."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s

from cloud.edgecontroller.lease import lease_body
from cloud.edgecontroller.nodehealth import CONTROLLER_MANAGER_LEASE, ControllerManagerWatch
from cloud.kube import Kube
from schemas import topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey
from schemas.timefmt import micro_time
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.mqtt import TestClient
from tests.fixtures.processes import wait_until
from tests.support.cluster import NODE_PW, Cluster, node_names, reply_to


def lease(cluster: Cluster, node: str) -> Any:
    try:
        return k8s.CoordinationV1Api(cluster.api.client).read_namespaced_lease(node, "kube-node-lease")
    except k8s.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def renewed_at(cluster: Cluster, node: str) -> float:
    found = lease(cluster, node)
    if found is None or found.spec.renew_time is None:
        return 0.0
    return float(found.spec.renew_time.timestamp())


def ready_heartbeat(cluster: Cluster, node: str) -> Any:
    """When the cloud last wrote the node's status (it stamps every condition's lastHeartbeatTime at each write)."""
    return {c.type: c.last_heartbeat_time for c in cluster.core.read_node(node).status.conditions}["Ready"]


def status_writes(cluster: Cluster, node: str) -> str:
    """The Node's resourceVersion: any write of it (status or not) changes it."""
    return str(cluster.core.read_node(node).metadata.resource_version)


def wait_for_renewal(cluster: Cluster, node: str, since: float) -> None:
    wait_until(lambda: renewed_at(cluster, node) > since, timeout=25, what="the Lease renewed again")


def test_lease_and_status_like_a_kubelets(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    found = wait_until(lambda: lease(cluster, node), timeout=30, what="the node's Lease in kube-node-lease")
    assert found.spec.holder_identity == node
    assert found.spec.lease_duration_seconds == 40
    owner = found.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("Node", node, cluster.core.read_node(node).metadata.uid)
    first = renewed_at(cluster, node)
    wait_until(lambda: renewed_at(cluster, node) > first, timeout=25, what="the Lease renewed by the next heartbeat")
    # The status settles (podman's version is known once podman answers); from then on, as a kubelet's, it is
    # computed every --node-status-s (2 s here) but written only on a change or every --node-status-report-s
    # (5 min): the Lease alone goes on being renewed, and the Node is not written at all.
    wait_until(lambda: cluster.core.read_node(node).status.node_info.container_runtime_version.startswith(
        "podman://4."), timeout=30, what="the status with podman's version")
    written = status_writes(cluster, node)
    heartbeat = ready_heartbeat(cluster, node)
    for _ in range(3):
        wait_for_renewal(cluster, node, renewed_at(cluster, node))
    assert ready_heartbeat(cluster, node) == heartbeat, "the Node's status was written though nothing changed"
    assert status_writes(cluster, node) == written

    # Someone else marks the conditions Unknown while the link is up (the node lifecycle controller, while no
    # EdgeController renewed the Lease for its grace period): the next heartbeat puts them back, not the next
    # status report, minutes later.
    before = {c.type: c for c in cluster.core.read_node(node).status.conditions}
    cluster.core.patch_node_status(node, {"status": {"conditions": [
        {"type": kind, "status": "Unknown", "reason": "NodeStatusUnknown",
         "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": c.last_heartbeat_time.isoformat(),
         "lastTransitionTime": c.last_transition_time.isoformat()}
        for kind, c in before.items()]}})
    wait_until(lambda: cluster.ready_status(node) == "True", timeout=30,
               what="NodeReady True again at the next heartbeat")
    after = {c.type: c for c in cluster.core.read_node(node).status.conditions}
    assert {k: (c.status, c.reason) for k, c in after.items()} == {k: (c.status, c.reason) for k, c in before.items()}

    status = cluster.core.read_node(node).status
    info = status.node_info
    assert info.container_runtime_version.startswith("podman://4.")
    assert info.kubelet_version.startswith("v1.20.2-edgehive")
    assert all((info.os_image, info.kernel_version, info.boot_id, info.machine_id))
    assert (info.operating_system, info.architecture) == ("linux", "amd64")
    assert set(status.capacity) == {"cpu", "memory", "pods", "ephemeral-storage"}
    assert set(status.allocatable) == set(status.capacity)
    assert {c.type: c.status for c in status.conditions} == {
        "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False", "Ready": "True"}
    assert {a.type for a in status.addresses} == {"InternalIP", "Hostname"}

    # The link goes: no renewal from then on, and NodeReady turns Unknown only after the 40 s grace.
    _edge, link = cluster.nodes[node]
    link.down()
    cut = time.time()
    wait_until(lambda: cluster.ready_status(node) == "Unknown", timeout=70, what="NodeReady Unknown after the grace")
    silent_for = time.time() - cut
    last_renewal = renewed_at(cluster, node)
    assert last_renewal <= cut + 1.0, "the Lease was renewed while the node's link was down"
    assert silent_for >= 40 - 10.5, f"Unknown {silent_for:.0f} s after the cut: before the grace period"
    conditions = {c.type: c for c in cluster.core.read_node(node).status.conditions}
    assert {c.status for c in conditions.values()} == {"Unknown"}
    assert conditions["Ready"].reason == "EdgeLinkLost"
    link.up()
    wait_until(lambda: cluster.ready_status(node) == "True", timeout=40, what="NodeReady True once the link is back")
    wait_until(lambda: renewed_at(cluster, node) > last_renewal, timeout=30, what="the Lease renewed again")


def test_a_node_renews_only_its_own_lease(cluster_factory: Any) -> None:
    mine, other = node_names(2)
    cluster: Cluster = cluster_factory([mine, other])
    wait_until(lambda: lease(cluster, other), timeout=30, what="the other node's Lease")
    broker = cluster.cloud_broker
    with TestClient(broker.host, broker.port, username=mine, password=NODE_PW) as edge:
        edge.subscribe(topics.link_down(mine))
        forged = Envelope(node=mine, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                          res=ResourceKey(None, "lease", other), body={})
        edge.publish(topics.link_up(mine), forged.encode())
        reply = reply_to(edge, forged.id)
        assert (reply.op, reply.body["code"]) == (Op.ERROR, 403)
        own = Envelope(node=mine, src="edged", group=Group.RESOURCE, op=Op.UPDATE,
                       res=ResourceKey(None, "lease", mine), body={})
        edge.publish(topics.link_up(mine), own.encode())
        assert reply_to(edge, own.id).op == Op.RESPONSE
    assert lease(cluster, other).spec.holder_identity == other
    assert lease(cluster, mine).spec.holder_identity == mine


def test_a_leading_controller_manager_is_seen_by_its_lease(apiserver: ApiServer) -> None:
    """The leader-election Lease kube-controller-manager keeps (written here as it writes it): held and fresh,
    EdgeController leaves marking silent nodes Unknown to it; stale or absent, EdgeController does it."""
    kube = Kube.connect(str(apiserver.kubeconfig))
    namespace, name = CONTROLLER_MANAGER_LEASE
    try:
        assert not ControllerManagerWatch(kube).active()
        body = lease_body(name, 15, time.time(), None)
        body["metadata"]["namespace"] = namespace
        body["spec"]["holderIdentity"] = "cm-host_0d3c"
        written = kube.create_lease(namespace, body)
        assert ControllerManagerWatch(kube).active()
        written["spec"]["renewTime"] = micro_time(time.time() - 60)
        kube.replace_lease(namespace, name, written)
        assert not ControllerManagerWatch(kube).active()
    finally:
        k8s.CoordinationV1Api(apiserver.client).delete_namespaced_lease(name, namespace)
        kube.close()
