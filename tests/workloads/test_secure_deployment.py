"""A hardened Deployment as charts write them (non-root, fsGroup, no capabilities, read-only root) runs at the edge.

Placed by the scheduler, with the kube-api-access volume the ServiceAccount admission plugin adds: its token
file belongs to fsGroup, as on a cluster, so the non-root process can read it.
"""

from __future__ import annotations

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster
from tests.workloads.kube import BUSYBOX, apply, deployment_ready, edge_nodes, exec_in, pods

TIMEOUT = 90.0
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_hardened_deployment(controlplane_cluster: Cluster, controlplane_namespace: str) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    apps = k8s.AppsV1Api(cluster.api.client)
    labels = {"app": "hardened"}
    apply(cluster, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hardened", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                "volumes": [{"name": "scratch", "emptyDir": {}}]}}}})
    wait_until(lambda: deployment_ready(apps, "hardened", ns, 1), timeout=TIMEOUT, what="hardened: 1 Ready replica")
    (pod,) = pods(cluster, ns, "app=hardened")
    assert pod.spec.node_name in edge_nodes(cluster)
    name = pod.metadata.name

    assert exec_in(cluster, ns, name, ["sh", "-c", "id -u; id -g"]) == (0, "1000\n3000\n")
    assert exec_in(cluster, ns, name, ["grep", "CapEff", "/proc/self/status"]) == (0, "CapEff:\t0000000000000000\n")
    assert exec_in(cluster, ns, name, ["sh", "-c", f"stat -Lc %g {TOKEN} && head -c 3 {TOKEN}"]) == (0, "2000\neyJ")
    assert exec_in(cluster, ns, name, ["sh", "-c", "touch /scratch/f && stat -c '%u %g' /scratch/f"]) == (
        0, "1000 2000\n")
    code, out = exec_in(cluster, ns, name, ["touch", "/f"])
    assert code != 0
    assert "Read-only file system" in out
