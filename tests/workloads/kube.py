"""What the workload tests share: kubectl against the control plane, and reading pods where they run.

kubectl is the one on PATH (v1.32); the API server is v1.20, which kubectl supports for what these tests
use except ``kubectl create cronjob`` (batch/v1 only): the CronJob is applied as a batch/v1beta1 manifest.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from kubernetes import client as k8s
from podman import PodmanClient

from edge.metamanager.store import MetaStore
from edge.podlabels import NAMESPACE_LABEL
from tests.support.cluster import Cluster
from tests.support.pods import exec_output

BUSYBOX = "localhost/busybox"
KUBECTL_TIMEOUT_S = 180.0


def kubectl(cluster: Cluster, *args: str, stdin: str | None = None, timeout: float = KUBECTL_TIMEOUT_S) -> str:
    """Run kubectl with the cluster's admin kubeconfig; a failure fails the test with kubectl's output."""
    argv = ["kubectl", "--kubeconfig", str(cluster.api.kubeconfig), *args]
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    return result.stdout


def apply(cluster: Cluster, manifest: dict[str, Any]) -> str:
    return kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(manifest))


def local_image(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` (a workload made by ``kubectl create ... --dry-run=client -o json``) with its containers'
    imagePullPolicy IfNotPresent: kubectl leaves it to the API server, which makes it Always for an image
    without a tag, and this machine has no registry to pull localhost/busybox from. And a short grace period:
    ``sleep`` as PID 1 ignores SIGTERM, so every pod would otherwise take 30 s to stop."""
    spec = manifest["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 2
    for container in spec["containers"]:
        container["imagePullPolicy"] = "IfNotPresent"
    return manifest


def pods(cluster: Cluster, namespace: str, selector: str = "") -> list[Any]:
    """The namespace's pods that are not being deleted."""
    listed = cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in listed if p.metadata.deletion_timestamp is None]


def all_running(found: list[Any]) -> bool:
    return bool(found) and all(
        p.status.phase == "Running" and p.status.container_statuses
        and all(s.ready for s in p.status.container_statuses) for p in found)


def edge_nodes(cluster: Cluster) -> set[str]:
    return set(cluster.nodes)


def podman_pods_of(cluster: Cluster, namespace: str) -> list[str]:
    """The names of podman's pods (on every node of the cluster: they share one service) for ``namespace``."""
    with PodmanClient(base_url=cluster.podman.base_url) as client:
        return [p.name for p in client.pods.list(filters={"label": f"{NAMESPACE_LABEL}={namespace}"})]


def edge_store_keys(cluster: Cluster, node: str, namespace: str) -> set[str]:
    """The keys a node's MetaManager holds for ``namespace``, read from its SQLite file."""
    edge, _link = cluster.nodes[node]
    store = MetaStore(edge.data / "meta.db")
    try:
        return {str(s.key) for s in store.all() if s.key.namespace == namespace}
    finally:
        store.close()


def deployment_ready(apps: k8s.AppsV1Api, name: str, namespace: str, replicas: int) -> bool:
    status = apps.read_namespaced_deployment(name, namespace).status
    return bool(status.ready_replicas == replicas and status.updated_replicas == replicas
                and (status.replicas or 0) == replicas)


def exec_in(cluster: Cluster, namespace: str, pod_name: str, command: list[str]) -> tuple[int, str]:
    """Run ``command`` in the running container of ``namespace/pod_name``: exit code, stdout and stderr."""
    code, out, err = exec_output(cluster.podman.base_url, pod_name, command, namespace=namespace)
    return code, out + err
