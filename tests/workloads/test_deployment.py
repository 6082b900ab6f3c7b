"""A Deployment made with ``kubectl create deployment`` runs on the edge nodes, scales, restarts and rolls back."""

from __future__ import annotations

import json

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster
from tests.workloads.kube import BUSYBOX, all_running, apply, deployment_ready, edge_nodes, kubectl, local_image, pods

TIMEOUT = 90.0


def test_create_scale_restart_undo(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apps = k8s.AppsV1Api(cluster.api.client)
    made = json.loads(kubectl(cluster, "create", "deployment", "d1", f"--image={BUSYBOX}", "-n", ns,
                              "--dry-run=client", "-o", "json", "--", "sleep", "3600"))
    apply(cluster, local_image(made))
    wait_until(lambda: deployment_ready(apps, "d1", ns, 1), timeout=TIMEOUT, what="d1: 1 Ready replica")
    (first,) = pods(cluster, ns, "app=d1")
    assert first.spec.node_name in edge_nodes(cluster)

    kubectl(cluster, "scale", "deployment/d1", "--replicas=3", "-n", ns)
    wait_until(lambda: deployment_ready(apps, "d1", ns, 3), timeout=TIMEOUT, what="d1: 3 Ready replicas")
    three = pods(cluster, ns, "app=d1")
    assert len(three) == 3
    assert all_running(three)
    assert {p.spec.node_name for p in three} <= edge_nodes(cluster)
    kubectl(cluster, "scale", "deployment/d1", "--replicas=1", "-n", ns)
    wait_until(lambda: deployment_ready(apps, "d1", ns, 1) and len(pods(cluster, ns, "app=d1")) == 1,
               timeout=TIMEOUT, what="d1 back to 1 replica")

    before = {p.metadata.uid for p in pods(cluster, ns, "app=d1")}
    kubectl(cluster, "rollout", "restart", "deployment/d1", "-n", ns)
    kubectl(cluster, "rollout", "status", "deployment/d1", "-n", ns, f"--timeout={TIMEOUT:.0f}s")
    restarted = apps.read_namespaced_deployment("d1", ns)
    annotations = restarted.spec.template.metadata.annotations or {}
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    wait_until(lambda: all_running(pods(cluster, ns, "app=d1")) and len(pods(cluster, ns, "app=d1")) == 1,
               timeout=TIMEOUT, what="d1's restarted pod Running alone")
    assert {p.metadata.uid for p in pods(cluster, ns, "app=d1")}.isdisjoint(before)

    kubectl(cluster, "rollout", "undo", "deployment/d1", "-n", ns)
    kubectl(cluster, "rollout", "status", "deployment/d1", "-n", ns, f"--timeout={TIMEOUT:.0f}s")
    undone = apps.read_namespaced_deployment("d1", ns)
    assert "kubectl.kubernetes.io/restartedAt" not in (undone.spec.template.metadata.annotations or {})
    assert undone.metadata.annotations["deployment.kubernetes.io/revision"] == "3"
    wait_until(lambda: deployment_ready(apps, "d1", ns, 1), timeout=TIMEOUT, what="d1 Ready after the undo")
    assert all_running(pods(cluster, ns, "app=d1"))
