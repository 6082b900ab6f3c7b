"""Offline autonomy under a real controller-manager: an edge node's link is cut for longer than the pods'
toleration period, and its Deployment's and DaemonSet's pods are neither evicted nor replaced; the same pods
(same UIDs, no restarts) run throughout and are shown Running when the link returns.

The control: the same Deployment with the opt-out annotation is evicted in the same cut, so the cut is long
enough and the controller-manager really evicts. Each Deployment's template tolerates the unreachable taint
for 20 s, as a user might write it, so that eviction comes within the test's time (DefaultTolerationSeconds'
300 s would take six minutes); the autonomy webhook replaces that, as it replaces the default 300 s.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from podman import PodmanClient

from cloud.admission.review import OPT_OUT
from edge.podlabels import CONTAINER_LABEL, NAMESPACE_LABEL, POD_LABEL
from tests.fixtures.processes import ManagedProcess, free_port, wait_until
from tests.support.cluster import CLOUD_PW, NODE_INDEX_LABEL, Cluster
from tests.workloads.kube import BUSYBOX, all_running, pods

EDGE = "node-role.kubernetes.io/edge"
TOLERATION_S = 20
GRACE_S = 40  # the controller-manager's node-monitor-grace-period (its default, as the fixture runs it)
CUT_S = GRACE_S + TOLERATION_S + 15  # longer than the node's grace plus the toleration period


@pytest.fixture
def autonomy_webhook(controlplane_cluster: Cluster) -> Iterator[ManagedProcess]:
    cluster = controlplane_cluster
    name = f"edgehive-autonomy-{uuid.uuid4().hex[:6]}"
    process = ManagedProcess("admission", [
        sys.executable, "-m", "cloud.admission", "--kubeconfig", str(cluster.api.kubeconfig),
        "--broker", cluster.cloud_broker.url("cloud", CLOUD_PW), "--listen", f"127.0.0.1:{free_port()}",
        "--webhook-name", name], cluster.workdir / f"{name}.log").start()
    registrations = k8s.AdmissionregistrationV1Api(cluster.api.client)
    try:
        wait_until(lambda: any(w.metadata.name == name for w in
                               registrations.list_mutating_webhook_configuration().items),
                   timeout=30, what="the autonomy webhook registered", alive=process)
        yield process
    finally:
        process.stop()
        registrations.delete_mutating_webhook_configuration(name)


def deployment(name: str, node_index: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}}, "spec": {
            "nodeSelector": {EDGE: "", NODE_INDEX_LABEL: node_index},
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": TOLERATION_S}],
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "36000"]}]}}}}


def daemonset(name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {
            "nodeSelector": {EDGE: ""}, "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "36000"]}]}}}}


def on_node(cluster: Cluster, ns: str, selector: str, node: str) -> list[Any]:
    return [p for p in cluster.core.list_namespaced_pod(ns, label_selector=selector).items
            if p.spec.node_name == node]


def containers_by_pod(cluster: Cluster, ns: str) -> dict[str, str]:
    """Running podman containers of the namespace: pod name -> container id (a restart makes a new one)."""
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        found = client.containers.list(filters={"label": f"{NAMESPACE_LABEL}={ns}"})
        return {c.attrs["Labels"][POD_LABEL]: c.id for c in found
                if c.attrs["State"] == "running" and CONTAINER_LABEL in c.attrs["Labels"]}


def restart_counts(pod: Any) -> list[int]:
    return [s.restart_count for s in pod.status.container_statuses or []]


def ready_status(cluster: Cluster, node: str) -> str:
    return next((c.status for c in cluster.core.read_node(node).status.conditions or [] if c.type == "Ready"), "")


def test_pods_of_an_offline_node_are_not_evicted(controlplane_cluster: Cluster, controlplane_namespace: str,
                                                 autonomy_webhook: ManagedProcess) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apps = k8s.AppsV1Api(cluster.api.client)
    node = next(n for n in cluster.nodes if cluster.core.read_node(n).metadata.labels.get(NODE_INDEX_LABEL) == "1")
    apps.create_namespaced_deployment(ns, deployment("kept", "1"))
    apps.create_namespaced_deployment(ns, deployment("evictable", "1", {OPT_OUT: "true"}))
    apps.create_namespaced_daemon_set(ns, daemonset("agent"))
    wait_until(lambda: len(on_node(cluster, ns, "app=kept", node)) == 2
               and all_running(on_node(cluster, ns, "app=kept", node))
               and len(on_node(cluster, ns, "app=evictable", node)) == 2
               and all_running(on_node(cluster, ns, "app=evictable", node))
               and all_running(on_node(cluster, ns, "app=agent", node)),
               timeout=120, what="both Deployments and the DaemonSet Running on the node")
    protected = {p.metadata.name: p.metadata.uid for s in ("app=kept", "app=agent")
                 for p in on_node(cluster, ns, s, node)}
    restarts = {p.metadata.name: restart_counts(p) for s in ("app=kept", "app=agent")
                for p in on_node(cluster, ns, s, node)}
    assert len(protected) == 3
    kept_tolerations = on_node(cluster, ns, "app=kept", node)[0].spec.tolerations
    assert all(t.toleration_seconds is None for t in kept_tolerations if t.key and "unreachable" in t.key)
    evictable = {p.metadata.uid for p in on_node(cluster, ns, "app=evictable", node)}
    containers = containers_by_pod(cluster, ns)
    assert set(protected) <= set(containers)

    _edge, link = cluster.nodes[node]
    link.down()
    cut = time.monotonic()
    try:
        wait_until(lambda: ready_status(cluster, node) == "Unknown", timeout=GRACE_S + 30,
                   what="NodeReady Unknown once the node is silent for the grace period")
        wait_until(lambda: all(p.metadata.deletion_timestamp for p in on_node(cluster, ns, "app=evictable", node)
                               if p.metadata.uid in evictable),
                   timeout=GRACE_S + TOLERATION_S + 60, what="the opted-out pods evicted by the controller-manager")
        remaining = CUT_S - (time.monotonic() - cut)
        if remaining > 0:
            time.sleep(remaining)  # the scenario itself: the link stays down past the toleration period
        during = {p.metadata.name: p for s in ("app=kept", "app=agent") for p in on_node(cluster, ns, s, node)}
        assert {n: p.metadata.uid for n, p in during.items()} == protected
        assert all(p.metadata.deletion_timestamp is None for p in during.values()), "a protected pod was evicted"
        assert len(pods(cluster, ns, "app=kept")) == 2, "the Deployment made replacements"
        # The node kept them running throughout (offline autonomy): the same containers.
        assert {n: c for n, c in containers_by_pod(cluster, ns).items() if n in protected} == \
            {n: containers[n] for n in protected}
    finally:
        link.up()
    wait_until(lambda: ready_status(cluster, node) == "True", timeout=60, what="NodeReady True after the cut")
    wait_until(lambda: all_running([p for s in ("app=kept", "app=agent") for p in on_node(cluster, ns, s, node)]),
               timeout=60, what="the same pods shown Running and Ready again")
    after = [p for s in ("app=kept", "app=agent") for p in on_node(cluster, ns, s, node)]
    assert {p.metadata.name: p.metadata.uid for p in after} == protected
    assert {p.metadata.name: restart_counts(p) for p in after} == restarts, "the outage caused restarts"
    assert {n: c for n, c in containers_by_pod(cluster, ns).items() if n in protected} == \
        {n: containers[n] for n in protected}
