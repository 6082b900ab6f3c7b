"""End to end: the Kubernetes API on one side, pods in podman on the other."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s
from podman import PodmanClient

from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster, node_names

IMAGE = "localhost/busybox:latest"


def pod_manifest(name: str, node: str, command: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                 "command": ["sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 3, "containers": [container], **spec}}


def running(cluster: Cluster, name: str) -> Any:
    pod = cluster.pod(name)
    if pod is None or pod.status.phase != "Running":
        return None
    statuses = pod.status.container_statuses or []
    return pod if statuses and all(s.state.running for s in statuses) else None


def exec_in(cluster: Cluster, pod_name: str, command: list[str]) -> tuple[int, str]:
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        found = [c for c in client.containers.list(filters={"label": f"io.edgehive.pod={pod_name}"})
                 if "io.edgehive.container" in c.attrs["Labels"] and c.attrs["State"] == "running"]
        assert found, f"no running container for {pod_name}"
        code, output = found[0].exec_run(command, demux=True)
    assert isinstance(output, tuple)
    return int(code or 0), bytes(output[0] or b"").decode()


def podman_pods(cluster: Cluster) -> set[str]:
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        return {p.name for p in client.pods.list()}


def test_kubectl_flow(cluster_factory: Any) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    core, ns = cluster.core, cluster.namespace
    core.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="site"),
                                                          data={"index.html": "v1"}))
    t0 = time.monotonic()
    core.create_namespaced_pod(ns, pod_manifest("web", node, "sleep 3600", volumes=[
        {"name": "site", "configMap": {"name": "site"}}],
        container={"volumeMounts": [{"name": "site", "mountPath": "/site"}]}))
    pod = wait_until(lambda: running(cluster, "web"), timeout=30, what="web Running in the API server")
    running_after = time.monotonic() - t0
    assert pod.status.pod_ip
    assert pod.status.container_statuses[0].container_id.startswith("podman://")
    assert exec_in(cluster, "web", ["cat", "/site/index.html"]) == (0, "v1")

    core.patch_namespaced_config_map("site", ns, {"data": {"index.html": "v2"}})
    wait_until(lambda: exec_in(cluster, "web", ["cat", "/site/index.html"]) == (0, "v2"), timeout=15,
               what="the updated file in the container")

    t1 = time.monotonic()
    core.delete_namespaced_pod("web", ns)
    wait_until(lambda: cluster.pod("web") is None and f"{ns}_web" not in podman_pods(cluster), timeout=3 + 2 + 10,
               what="web gone from the API server and podman")
    deleted_after = time.monotonic() - t1
    assert deleted_after <= 3 + 2, f"deletion took {deleted_after:.1f} s"
    assert running_after <= 3, f"Running after {running_after:.1f} s"
    print(f"\nRunning in the API server {running_after:.2f} s after create; deleted in {deleted_after:.2f} s")
