"""DaemonSets and node selectors: the scheduler and the DaemonSet controller place pods on the edge nodes
that users' selectors and tolerations name."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from schemas.kubeobj import EDGE_ROLE_LABEL
from tests.fixtures.processes import wait_until
from tests.support.cluster import NODE_INDEX_LABEL, Cluster
from tests.workloads.kube import BUSYBOX, all_running, apply, edge_nodes, pods

TIMEOUT = 90.0


def container() -> dict[str, Any]:
    return {"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}


def test_daemonset_runs_one_pod_per_edge_node(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apply(cluster, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "nodeSelector": {EDGE_ROLE_LABEL: ""},
                "tolerations": [{"key": EDGE_ROLE_LABEL, "operator": "Exists", "effect": "NoSchedule"},
                                {"key": "node-role.kubernetes.io/master", "operator": "Exists",
                                 "effect": "NoSchedule"}],
                "terminationGracePeriodSeconds": 2, "containers": [container()]}}}})
    apps = k8s.AppsV1Api(cluster.api.client)
    edge = {n.metadata.name for n in cluster.core.list_node(label_selector=EDGE_ROLE_LABEL).items}
    assert edge_nodes(cluster) <= edge

    def rolled_out() -> bool:
        status = apps.read_namespaced_daemon_set("agent", ns).status
        return bool(status.desired_number_scheduled == len(edge) and status.number_ready == len(edge))

    wait_until(rolled_out, timeout=TIMEOUT, what=f"DaemonSet agent Ready on the {len(edge)} edge nodes")
    placed = pods(cluster, ns, "app=agent")
    assert all_running(placed)
    assert sorted(p.spec.node_name for p in placed) == sorted(edge)


def test_node_selector_targets_one_node(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    second = next(name for name in cluster.nodes
                  if cluster.core.read_node(name).metadata.labels.get(NODE_INDEX_LABEL) == "2")
    for index in range(3):  # several, so that landing there by chance is unlikely (1 in 8)
        apply(cluster, {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"picky-{index}", "namespace": ns, "labels": {"app": "picky"}},
                        "spec": {"nodeSelector": {NODE_INDEX_LABEL: "2"}, "terminationGracePeriodSeconds": 2,
                                 "containers": [container()]}})
    wait_until(lambda: len(pods(cluster, ns, "app=picky")) == 3 and all_running(pods(cluster, ns, "app=picky")),
               timeout=TIMEOUT, what="the three selected pods Running")
    assert {p.spec.node_name for p in pods(cluster, ns, "app=picky")} == {second}
