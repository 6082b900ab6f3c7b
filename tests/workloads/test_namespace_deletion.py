"""``kubectl delete namespace``: the namespace controller empties it, and the nodes let go of what was in it."""

from __future__ import annotations

from tests.fixtures.processes import wait_until
from tests.support.cluster import NODE_INDEX_LABEL, Cluster, namespace_gone
from tests.workloads.kube import BUSYBOX, all_running, apply, edge_store_keys, kubectl, podman_pods_of, pods

TIMEOUT = 90.0


def test_delete_namespace_removes_everything_from_api_podman_and_store(controlplane_cluster: Cluster,
                                                                       controlplane_namespace: str) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apply(cluster, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
                    "data": {"mode": "edge"}})
    for index in ("1", "2"):  # one pod on each node; the first reads the ConfigMap
        volumes = [{"name": "settings", "configMap": {"name": "settings"}}] if index == "1" else []
        mounts = [{"name": "settings", "mountPath": "/settings"}] if index == "1" else []
        apply(cluster, {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"p{index}", "namespace": ns, "labels": {"app": "doomed"}},
                        "spec": {"nodeSelector": {NODE_INDEX_LABEL: index}, "terminationGracePeriodSeconds": 2,
                                 "volumes": volumes,
                                 "containers": [{"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                                 "command": ["sleep", "3600"], "volumeMounts": mounts}]}})
    wait_until(lambda: len(pods(cluster, ns, "app=doomed")) == 2 and all_running(pods(cluster, ns, "app=doomed")),
               timeout=TIMEOUT, what="both pods Running")
    placed = {p.metadata.name: p.spec.node_name for p in pods(cluster, ns, "app=doomed")}
    first, second = placed["p1"], placed["p2"]
    assert first != second
    assert {f"{ns}/pod/p1", f"{ns}/configmap/settings"} <= edge_store_keys(cluster, first, ns)
    assert f"{ns}/pod/p2" in edge_store_keys(cluster, second, ns)
    assert len(podman_pods_of(cluster, ns)) == 2

    kubectl(cluster, "delete", "namespace", ns, "--wait=false")
    core = cluster.core
    wait_until(lambda: namespace_gone(core, ns), timeout=TIMEOUT, what=f"namespace {ns} gone from the API server")
    wait_until(lambda: not podman_pods_of(cluster, ns), timeout=TIMEOUT, what=f"{ns}'s pods gone from podman")
    for node in (first, second):
        wait_until(lambda node=node: not edge_store_keys(cluster, node, ns), timeout=TIMEOUT,  # type: ignore[misc]
                   what=f"{ns}'s objects gone from {node}'s MetaManager store")
