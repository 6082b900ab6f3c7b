"""persistentVolumeClaim volumes on real parts: claims bound by kube-controller-manager's PersistentVolume binder,
sent with their volumes through the cloud side to an edge node, and mounted into podman containers. The pods name
their node (the scheduler's part is tests/workloads/test_statefulset.py)."""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.processes import wait_until
from tests.support.cluster import Cluster
from tests.workloads.kube import exec_in


def volume(name: str, namespace: str, claim: str, **source: Any) -> dict[str, Any]:
    """A PersistentVolume pre-bound to ``claim`` (claimRef), as an administrator writes one for a given claim."""
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": namespace, "name": claim},
                     **source}}


def claim(name: str, volume_name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "volumeName": volume_name,
                     "resources": {"requests": {"storage": "1Gi"}}}}


def claiming_pod(name: str, node: str, claim_name: str, read_only: bool = False) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name,
                                                                            "readOnly": read_only}}],
                     "containers": [{"name": "main", "image": "localhost/busybox:latest",
                                     "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "sleep 3600"],
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}


def pod_of(cluster: Cluster, namespace: str, name: str) -> Any:
    try:
        return cluster.core.read_namespaced_pod(name, namespace)
    except k8s.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def bound(cluster: Cluster, namespace: str, claim_name: str) -> bool:
    found = cluster.core.read_namespaced_persistent_volume_claim(claim_name, namespace)
    return bool(found.status.phase == "Bound")


def waiting(cluster: Cluster, namespace: str, name: str) -> Any:
    pod = pod_of(cluster, namespace, name)
    statuses = (pod.status.container_statuses or []) if pod is not None else []
    return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None


def running(cluster: Cluster, namespace: str, name: str) -> Any:
    pod = pod_of(cluster, namespace, name)
    statuses = (pod.status.container_statuses or []) if pod is not None else []
    return pod if pod is not None and pod.status.phase == "Running" and statuses and statuses[0].state.running \
        else None


def failed(cluster: Cluster, namespace: str, name: str) -> Any:
    pod = pod_of(cluster, namespace, name)
    return pod if pod is not None and pod.status.phase == "Failed" else None


class Volumes:
    """PersistentVolumes are cluster-scoped and the API server lives for the session: each test deletes its own."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.names: list[str] = []

    def create(self, claim_name: str, **source: Any) -> str:
        name = f"pv-{uuid.uuid4().hex[:8]}"
        self.cluster.core.create_persistent_volume(volume(name, self.namespace, claim_name, **source))
        self.names.append(name)
        return name

    def delete_all(self) -> None:
        for name in self.names:
            self.cluster.core.delete_persistent_volume(name)


def test_a_bound_hostpath_claim_is_mounted_read_write_or_read_only(controlplane_cluster: Cluster,
                                                                   controlplane_namespace: str, tmp_path: Path) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    core, node = cluster.core, sorted(cluster.nodes)[0]
    volumes = Volumes(cluster, ns)
    try:
        # The claim names a volume that does not exist yet: the binder leaves it Pending, and the pod waits.
        pv = f"pv-{uuid.uuid4().hex[:8]}"
        core.create_namespaced_persistent_volume_claim(ns, claim("data", pv))
        core.create_namespaced_pod(ns, claiming_pod("writer", node, "data"))
        state = wait_until(lambda: (w := waiting(cluster, ns, "writer")) and "is not bound" in (w.message or "") and w,
                           timeout=30, what="writer waiting for its claim")
        assert state.reason == "ContainerCreating"
        assert 'persistentvolumeclaim "data" is not bound (phase Pending)' in state.message

        directory = tmp_path / "pv-data"
        volumes.names.append(pv)
        core.create_persistent_volume(volume(pv, ns, "data", hostPath={"path": str(directory)}))
        wait_until(lambda: bound(cluster, ns, "data"), timeout=30, what="the binder to bind the claim")
        wait_until(lambda: running(cluster, ns, "writer"), timeout=30, what="writer Running once its claim is bound")
        assert exec_in(cluster, ns, "writer", ["sh", "-c", "echo kept > /data/file"]) == (0, "")
        assert (directory / "file").read_text() == "kept\n"

        core.create_namespaced_pod(ns, claiming_pod("reader", node, "data", read_only=True))
        wait_until(lambda: running(cluster, ns, "reader"), timeout=30, what="reader Running")
        assert exec_in(cluster, ns, "reader", ["cat", "/data/file"]) == (0, "kept\n")
        code, output = exec_in(cluster, ns, "reader", ["touch", "/data/other"])
        assert code != 0
        assert "Read-only file system" in output
        assert not (directory / "other").exists()

        # EdgeD starts again with its pod gone from podman: the claim and its volume come from MetaManager's
        # store, as after a reboot, and the pod is made again over the same directory.
        edge, _link = cluster.nodes[node]
        edge.stop("edged")
        with cluster.podman.client() as client:
            writer = client.pods.get(f"{ns}_writer")
            writer.stop(timeout=0)  # killed, as a reboot does (and not 10 s per container waiting on SIGTERM)
            writer.remove(force=True)
        edge.start("edged")
        wait_until(lambda: exec_in(cluster, ns, "writer", ["cat", "/data/file"]) == (0, "kept\n"), timeout=30,
                   what="writer made again by the restarted EdgeD, over its volume")
    finally:
        volumes.delete_all()


def test_volumes_this_node_cannot_mount_fail_the_pod_with_the_reason(controlplane_cluster: Cluster,
                                                                     controlplane_namespace: str,
                                                                     tmp_path: Path) -> None:
    cluster, ns = controlplane_cluster, controlplane_namespace
    core, node = cluster.core, sorted(cluster.nodes)[0]
    volumes = Volumes(cluster, ns)
    try:
        elsewhere = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["some-other-node"]}]}]}}
        local = volumes.create("local", local={"path": str(tmp_path)}, nodeAffinity=elsewhere)
        nfs = volumes.create("nfs", nfs={"server": "nas.invalid", "path": "/export"})
        for name, pv in (("local", local), ("nfs", nfs)):
            core.create_namespaced_persistent_volume_claim(ns, claim(name, pv))
            wait_until(partial(bound, cluster, ns, name), timeout=30, what=f"claim {name} bound")
            core.create_namespaced_pod(ns, claiming_pod(f"on-{name}", node, name))
        pod = wait_until(lambda: failed(cluster, ns, "on-local"), timeout=30, what="on-local Failed")
        assert f'local persistentvolume "{local}" has a nodeAffinity that does not include node {node}' in \
            pod.status.message
        pod = wait_until(lambda: failed(cluster, ns, "on-nfs"), timeout=30, what="on-nfs Failed")
        assert f'persistentvolume "{nfs}" is of type nfs, which this node cannot mount' in pod.status.message
    finally:
        volumes.delete_all()
